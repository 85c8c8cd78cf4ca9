"""TuneForge's exception tree.

Every error raised on purpose by TuneForge derives from :class:`TuneforgeError`; the CLI turns them into a
one-paragraph message (never a traceback) and, later, the API maps them to HTTP statuses in one place::

    TuneforgeError
    ├── ConfigError          a bad option or config file (every problem listed at once)
    ├── DataError            a bad data file (every problem listed with file, line and field)
    ├── ModelNotFoundError   an unknown base model or a missing model package
    ├── ModelFormatError     a model file that is not what it claims to be
    ├── RunError             a run folder that is missing, incomplete or already used
    ├── StorageError         the disk is full or a path cannot be written
    └── ServiceError         a request to the service (API, job queue, admin CLI) cannot be honoured
        ├── InvalidRequestError    a bad value or a state that does not allow the operation
        ├── AuthError              no API key, or an unknown or revoked one
        ├── PermissionDeniedError  the key lacks the scope, the trial ended, the object is not yours to change
        ├── NotFoundError          no such object for this tenant (another tenant's objects are not found either)
        ├── ConflictError          the object is in use, or a request with the same Idempotency-Key is running
        ├── IdempotencyError       an Idempotency-Key reused with a different request
        ├── PayloadTooLargeError   an upload over the size limit
        ├── QuotaExceededError     a plan limit (concurrent jobs, trained tokens, storage) is reached
        │   └── RateLimitError     too many requests (or tokens) in the current minute
        └── ServiceUnavailableError  the server is busy (a full generation queue) or a request ran past its time

The API maps each ServiceError (and ConfigError, DataError, ...) to an HTTP status in one table in
``tuneforge.api.errors``; ``code`` and ``param`` travel into the OpenAI-style error body.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AuthError",
    "ConfigError",
    "ConflictError",
    "DataError",
    "DataProblem",
    "IdempotencyError",
    "InvalidRequestError",
    "ModelFormatError",
    "ModelNotFoundError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "RunError",
    "ServiceError",
    "ServiceUnavailableError",
    "StorageError",
    "TuneforgeError",
]


class TuneforgeError(Exception):
    """Root of TuneForge's errors. ``hint`` says what the user can do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class ConfigError(TuneforgeError):
    """Invalid options. ``problems`` holds one line per bad field."""

    def __init__(self, problems: list[str] | str, *, hint: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        head = "Invalid configuration:" if len(self.problems) > 1 else "Invalid configuration:"
        super().__init__(head + "".join(f"\n  - {p}" for p in self.problems), hint=hint)


@dataclass(frozen=True)
class DataProblem:
    """One problem in a data file: where it is and what to do about it."""

    file: str
    line: int | None
    field: str | None
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line is not None else "")
        field = f" [{self.field}]" if self.field else ""
        hint = f" — {self.hint}" if self.hint else ""
        return f"{where}{field}: {self.message}{hint}"


class DataError(TuneforgeError):
    """A data file failed to read or validate; ``problems`` lists every problem found."""

    MAX_SHOWN = 20

    def __init__(self, problems: list[DataProblem], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        shown = self.problems[: self.MAX_SHOWN]
        more = len(self.problems) - len(shown)
        lines = [f"  - {p}" for p in shown]
        if more > 0:
            lines.append(f"  ... and {more} more problem(s)")
        n = len(self.problems)
        super().__init__(f"{n} problem(s) in the data:\n" + "\n".join(lines), hint=hint)


class ModelNotFoundError(TuneforgeError):
    """The base model name is unknown or its package is not installed."""


class ModelFormatError(TuneforgeError):
    """A model file is corrupt or in an unexpected format."""


class RunError(TuneforgeError):
    """A run folder is missing, incomplete, or would be overwritten."""


class StorageError(TuneforgeError):
    """Writing to disk failed (disk full, permission denied)."""


class ServiceError(TuneforgeError):
    """A request to the service cannot be honoured. ``code`` is a stable machine-readable reason and ``param``
    the request field at fault (both go into the API's error body)."""

    default_code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code or self.default_code
        self.param = param


class InvalidRequestError(ServiceError):
    """A bad value in a request, or an object whose state does not allow the operation."""

    default_code = "invalid_request"


class AuthError(ServiceError):
    """No API key, or one that is unknown or revoked."""

    default_code = "invalid_api_key"


class PermissionDeniedError(ServiceError):
    """The key lacks the scope for the operation, the tenant's trial ended, or the object cannot be changed."""

    default_code = "permission_denied"


class NotFoundError(ServiceError):
    """No such object for this tenant; another tenant's objects are reported exactly like missing ones."""

    default_code = "not_found"


class ConflictError(ServiceError):
    """The object is in use, or a request with the same Idempotency-Key is still being processed."""

    default_code = "conflict"


class IdempotencyError(ServiceError):
    """An Idempotency-Key was reused with a different request body or endpoint."""

    default_code = "idempotency_key_reused"


class PayloadTooLargeError(ServiceError):
    """An upload larger than the configured limit."""

    default_code = "file_too_large"


class QuotaExceededError(ServiceError):
    """A plan limit is reached. ``resource`` names the limit (``requests``, ``tokens``, ``jobs``, ``storage``);
    ``limit``/``remaining``/``reset_seconds`` feed the ``x-ratelimit-*`` and ``retry-after`` headers."""

    default_code = "quota_exceeded"

    def __init__(self, message: str, *, resource: str, limit: int, remaining: int = 0,
                 reset_seconds: float | None = None, code: str | None = None, param: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, code=code, param=param, hint=hint)
        self.resource = resource
        self.limit = limit
        self.remaining = remaining
        self.reset_seconds = reset_seconds


class RateLimitError(QuotaExceededError):
    """Too many requests in the current window."""

    default_code = "rate_limit_exceeded"


class ServiceUnavailableError(ServiceError):
    """The server cannot take the request now (its generation queue is full) or could not finish it in time;
    ``retry_after`` (seconds) feeds the ``retry-after`` header."""

    default_code = "server_overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0, code: str | None = None,
                 param: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, code=code, param=param, hint=hint)
        self.retry_after = retry_after
