"""The process executor (the default): one child process per run, started with ``spawn``.

A crash or an out-of-memory kill takes only that attempt; the kernel kills the child when its worker dies
(``PR_SET_PDEATHSIG``), and the child also exits when it sees its parent gone, so a dead worker leaves no orphan
training to race the attempt that replaces it.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue
import signal
from typing import Any

from tuneforge.jobs.executors.base import RunHandle, crashed, resolve_runner

__all__ = ["ProcessExecutor"]

def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child_main(runner_path: str, spec: Any, events: Any, stop: Any, parent: int) -> None:
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if os.environ.pop("TUNEFORGE_OMP_WAIT_POLICY_DEFAULTED", None):  # set for serving; training wants spinning
        os.environ.pop("OMP_WAIT_POLICY", None)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    def should_stop() -> bool:
        if os.getppid() != parent:  # orphaned: another attempt will own this job; write nothing more
            os._exit(1)
        return bool(stop.is_set())

    try:
        result = resolve_runner(runner_path)(spec, lambda e: events.put(("event", e)), should_stop)
    except BaseException as e:  # noqa: BLE001
        result = crashed(e)
    events.put(("result", result))
    events.close()
    events.join_thread()


class _ProcessRun:
    def __init__(self, ctx: Any, runner: str, spec: Any) -> None:
        self._q = ctx.Queue()
        self._stop = ctx.Event()
        self._result: dict[str, Any] | None = None
        self._pending: list[dict[str, Any]] = []
        self._proc = ctx.Process(target=_child_main, args=(runner, spec, self._q, self._stop, os.getpid()),
                                 daemon=True, name=f"tuneforge-run-{getattr(spec, 'job_id', '?')}")
        self._proc.start()

    def _drain(self, timeout: float = 0.0) -> None:
        while True:
            try:
                kind, payload = self._q.get(timeout=timeout) if timeout else self._q.get_nowait()
            except (queue.Empty, EOFError, OSError):
                return
            if kind == "result":
                self._result = payload
            else:
                self._pending.append(payload)

    def events(self) -> list[dict[str, Any]]:
        self._drain()
        out, self._pending = self._pending, []
        return out

    def done(self) -> bool:
        if self._proc.is_alive():
            return False
        if self._result is None:
            self._drain(timeout=0.2)  # what the child wrote just before it exited
        return True

    def result(self) -> dict[str, Any]:
        if self._result is not None:
            return self._result
        code = self._proc.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return {"status": "crashed", "message": f"the training process ended without a result ({how})"}

    def request_stop(self) -> None:
        self._stop.set()

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(timeout=10)

    @property
    def pid(self) -> int | None:
        return self._proc.pid


class ProcessExecutor:
    """Runs each job in a child process of its own (``spawn``: no state shared with the worker's threads)."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")

    def start(self, runner: str, spec: Any) -> RunHandle:
        return _ProcessRun(self._ctx, runner, spec)
