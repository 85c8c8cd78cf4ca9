"""TuneForge's exception tree.

Every error raised on purpose by TuneForge derives from :class:`TuneforgeError`; the CLI turns them into a
one-paragraph message (never a traceback) and, later, the API maps them to HTTP statuses in one place::

    TuneforgeError
    ├── ConfigError          a bad option or config file (every problem listed at once)
    ├── DataError            a bad data file (every problem listed with file, line and field)
    ├── ModelNotFoundError   an unknown base model or a missing model package
    ├── ModelFormatError     a model file that is not what it claims to be
    ├── RunError             a run folder that is missing, incomplete or already used
    └── StorageError         the disk is full or a path cannot be written
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "DataError",
    "DataProblem",
    "ModelFormatError",
    "ModelNotFoundError",
    "RunError",
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
