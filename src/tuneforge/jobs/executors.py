"""Executors run a job's work (``runner(spec, emit, should_stop) -> dict``) away from the worker's loop.

An :class:`Executor` starts a run and returns a :class:`RunHandle` the worker polls: drain its events, ask it to
stop (cancel, pause), kill it (its lease was lost), read its result. Two implementations ship:

* :class:`ProcessExecutor` (the default): one child process per run, started with ``spawn``. A crash or an
  out-of-memory kill takes only that attempt; the kernel kills the child when its worker dies
  (``PR_SET_PDEATHSIG``), and the child also exits when it sees its parent gone, so a dead worker leaves no
  orphan training to race the attempt that replaces it.
* :class:`ThreadExecutor`: a thread in the worker process, for tests and debugging.

A Ray executor would implement the same two methods with a remote task and an actor handle.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing as mp
import os
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Executor", "ProcessExecutor", "RunHandle", "ThreadExecutor", "resolve_runner"]

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
    module, _, name = path.partition(":")
    fn: Runner = getattr(importlib.import_module(module), name)
    return fn


# ------------------------------------------------------------------------------------------------------ thread
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
            self._result = {"status": "crashed", "message": f"{type(e).__name__}: {e}"}

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


# ----------------------------------------------------------------------------------------------------- process
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
        result = {"status": "crashed", "message": f"{type(e).__name__}: {e}"}
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
