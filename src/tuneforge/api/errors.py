"""Errors as HTTP responses: the one table from TuneForge's exceptions to statuses, in OpenAI's error format
``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneforge.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    DataError,
    IdempotencyError,
    InvalidRequestError,
    ModelFormatError,
    ModelNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    RunError,
    ServiceError,
    ServiceUnavailableError,
    StorageError,
    TuneforgeError,
)

__all__ = ["error_body", "install_error_handlers", "status_for"]

log = logging.getLogger(__name__)

#: exception class -> (HTTP status, OpenAI error type); the first match in this order wins
STATUS: list[tuple[type[TuneforgeError], int, str]] = [
    (RateLimitError, 429, "rate_limit_error"),
    (QuotaExceededError, 429, "insufficient_quota"),
    (AuthError, 401, "invalid_request_error"),
    (PermissionDeniedError, 403, "permission_error"),
    (NotFoundError, 404, "invalid_request_error"),
    (ConflictError, 409, "conflict_error"),
    (IdempotencyError, 422, "idempotency_error"),
    (PayloadTooLargeError, 413, "invalid_request_error"),
    (InvalidRequestError, 400, "invalid_request_error"),
    (ConfigError, 400, "invalid_request_error"),
    (DataError, 400, "invalid_request_error"),
    (ModelNotFoundError, 400, "invalid_request_error"),
    (ModelFormatError, 500, "server_error"),
    (RunError, 500, "server_error"),
    (StorageError, 507, "server_error"),
    (ServiceUnavailableError, 503, "server_error"),
    (ServiceError, 400, "invalid_request_error"),
    (TuneforgeError, 500, "server_error"),
]


def status_for(exc: TuneforgeError) -> tuple[int, str]:
    for cls, status, kind in STATUS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "server_error"


def error_body(message: str, type: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _code(exc: TuneforgeError) -> str | None:
    if isinstance(exc, ServiceError):
        return exc.code
    return {ConfigError: "invalid_value", DataError: "invalid_input",
            ModelNotFoundError: "model_not_found"}.get(type(exc))


def _param(exc: TuneforgeError) -> str | None:
    if isinstance(exc, ServiceError):
        return exc.param
    if isinstance(exc, ConfigError) and len(exc.problems) == 1:
        head = exc.problems[0].split(":", 1)[0]
        return head if head and " " not in head else None
    return None


def _quota_headers(exc: QuotaExceededError) -> dict[str, str]:
    r = exc.resource
    headers = {f"x-ratelimit-limit-{r}": str(exc.limit), f"x-ratelimit-remaining-{r}": str(max(0, exc.remaining))}
    if exc.reset_seconds is not None:
        headers[f"x-ratelimit-reset-{r}"] = f"{max(0.0, exc.reset_seconds):.3f}s"
    retry = max(1, int(exc.reset_seconds + 0.999)) if exc.reset_seconds is not None else 60
    headers["retry-after"] = str(retry)
    if r in ("tokens", "storage") and not isinstance(exc, RateLimitError):  # a monthly quota: no retry clears it
        headers["x-should-retry"] = "false"
    return headers


async def _tuneforge_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TuneforgeError)
    status, kind = status_for(exc)
    if status >= 500:
        log.error("request %s failed: %s", request.url.path, exc)
    headers = _quota_headers(exc) if isinstance(exc, QuotaExceededError) else {}
    if isinstance(exc, ServiceUnavailableError):
        headers["retry-after"] = str(max(1, int(exc.retry_after + 0.999)))
    if status in (400, 403, 404, 413, 422):
        headers["x-should-retry"] = "false"
    return JSONResponse(error_body(str(exc), kind, param=_param(exc), code=_code(exc)), status_code=status,
                        headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    first_param = None
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "header")]
        param = ".".join(loc) or None
        first_param = first_param or param
        problems.append(f"{param or 'body'}: {err.get('msg')}")
    return JSONResponse(error_body("Invalid request: " + "; ".join(problems), "invalid_request_error",
                                   param=first_param, code="invalid_value"), status_code=400,
                        headers={"x-should-retry": "false"})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}."
    code = getattr(exc, "code", None) or {404: "unknown_url", 405: "method_not_allowed",
                                          413: "request_too_large"}.get(exc.status_code)
    return JSONResponse(error_body(message, "invalid_request_error", param=getattr(exc, "param", None), code=code),
                        status_code=exc.status_code, headers=dict(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TuneforgeError, _tuneforge_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Anything else is answered by RequestContextMiddleware as a 500 in the same format.
