"""The thread executor: a job runs in a thread of the worker process (tests and debugging)."""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

from tuneforge.jobs.executors.base import RunHandle, Runner, crashed, resolve_runner

__all__ = ["ThreadExecutor"]


class _ThreadRun:
    def __init__(self, runner: Runner, spec: Any) -> None:
        self._events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._killed = False
        self._result: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._main, args=(runner, spec), daemon=True,
                                        name=f"tuneforge-run-{getattr(spec, 'job_id', '?')}")
        self._thread.start()

    def _main(self, runner: Runner, spec: Any) -> None:
        try:
            self._result = runner(spec, self._emit, self._stop.is_set)
        except BaseException as e:  # noqa: BLE001
            self._result = crashed(e)

    def _emit(self, event: dict[str, Any]) -> None:
        if not self._killed:
            self._events.put(event)

    def events(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> dict[str, Any]:
        return self._result or {"status": "crashed", "message": "the run ended without a result"}

    def request_stop(self) -> None:
        self._stop.set()

    def kill(self) -> None:
        # A thread cannot be killed: it stops at its next step, and its outputs are discarded.
        self._killed = True
        self._stop.set()

    @property
    def pid(self) -> int | None:
        return os.getpid()


class ThreadExecutor:
    """Runs each job in a thread of the worker process."""

    def start(self, runner: str, spec: Any) -> RunHandle:
        return _ThreadRun(resolve_runner(runner), spec)
