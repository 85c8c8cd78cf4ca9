"""What an executor is: it starts a job's work (``runner(spec, emit, should_stop) -> dict``) away from the
worker's loop and hands back a :class:`RunHandle` the worker polls.

A runner is named ``"module:function"`` (:func:`resolve_runner`), so an executor can start it in another process
or on another machine. It emits events (dicts) as it goes, checks ``should_stop()`` between steps and returns its
result; an executor turns an exception or a lost run into ``{"status": "crashed", "message": ...}``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Executor", "RunHandle", "Runner", "crashed", "resolve_runner"]

Runner = Callable[[Any, Callable[[dict[str, Any]], None], Callable[[], bool]], dict[str, Any]]


class RunHandle(Protocol):
    def events(self) -> list[dict[str, Any]]:
        """Events emitted since the last call."""
        ...

    def done(self) -> bool: ...

    def result(self) -> dict[str, Any]:
        """The runner's result once done; a crash gives ``{"status": "crashed", "message": ...}``."""
        ...

    def request_stop(self) -> None:
        """Ask the run to stop at its next step (it leaves a checkpoint)."""
        ...

    def kill(self) -> None:
        """Stop the run now, without a checkpoint (its lease is lost: another attempt owns the job)."""
        ...

    @property
    def pid(self) -> int | None: ...


class Executor(Protocol):
    def start(self, runner: str, spec: Any) -> RunHandle:
        """Start ``runner`` (``"module:function"``) on ``spec``."""
        ...


def resolve_runner(path: str) -> Runner:
    """The function a ``"module:function"`` path names."""
    module, _, name = path.partition(":")
    fn: Runner = getattr(importlib.import_module(module), name)
    return fn


def crashed(e: BaseException) -> dict[str, Any]:
    """The result of a run whose runner raised ``e``."""
    return {"status": "crashed", "message": f"{type(e).__name__}: {e}"}
