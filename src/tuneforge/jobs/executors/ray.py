"""The Ray executor (``TUNEFORGE_EXECUTOR=ray``): each run is a Ray actor on the cluster (``RAY_ADDRESS``, else a Ray
started in the worker's process), running the named runner as the process executor's child does.

The worker keeps everything that makes the queue safe: it holds the lease and renews it, records the events and
checkpoints, and completes the job under its attempt guard; the cluster only does the work. The actor runs the
runner in one thread and answers the worker's polls in another (``max_concurrency``): ``drain`` hands over the
events emitted since the last poll, ``request_stop`` sets the flag the runner's ``should_stop()`` reads (cancel,
pause: it stops at its next step, leaving a checkpoint) and :meth:`_RayRun.kill` kills the actor, cancelling its
task (the lease was lost). The actor is owned by the worker's process: if that process dies, Ray ends the actor with
it, and the job stays leased until its lease expires and another worker runs it again (at-least-once, the later
attempt's result wins). The runner reads and writes the worker's ``data_dir`` (its work folder): on a cluster of
several machines that folder is on a file system every node mounts (docs/ray.md).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from tuneforge.jobs.executors.base import RunHandle, crashed, resolve_runner

__all__ = ["RayExecutor"]


class _RunActor:
    """Runs one runner; its methods other than :meth:`run` answer while it trains (a threaded actor)."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def pid(self) -> int:
        return os.getpid()

    def run(self, runner_path: str, spec: Any) -> dict[str, Any]:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            return resolve_runner(runner_path)(spec, self._emit, self._stop.is_set)
        except BaseException as e:  # noqa: BLE001 - the worker records it as a crash
            return crashed(e)

    def _emit(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(event)

    def drain(self) -> list[dict[str, Any]]:
        with self._lock:
            out, self._events = self._events, []
        return out

    def request_stop(self) -> None:
        self._stop.set()


class _RayRun:
    def __init__(self, ray: Any, actor: Any, runner: str, spec: Any) -> None:
        self._ray = ray
        self._actor = actor
        self._ref = actor.run.remote(runner, spec)
        self._pid_ref = actor.pid.remote()
        self._pid: int | None = None
        self._drain_ref: Any = None
        ray.wait([self._pid_ref], timeout=1)  # the actor's process, when it starts at once (the start event names it)
        self._result: dict[str, Any] | None = None
        self._final_events: list[dict[str, Any]] = []

    def events(self) -> list[dict[str, Any]]:
        """What the actor emitted since the last call; never waits (the worker's loop renews leases): one poll of
        the actor is in flight at a time, and its answer is taken once it has come."""
        if self._result is not None:
            out, self._final_events = self._final_events, []
            return out
        if self._drain_ref is None:
            self._drain_ref = self._actor.drain.remote()
        ready, _ = self._ray.wait([self._drain_ref], timeout=0)
        if not ready:
            return []
        ref, self._drain_ref = self._drain_ref, self._actor.drain.remote()
        return self._take(ref)

    def _take(self, ref: Any) -> list[dict[str, Any]]:
        try:
            events: list[dict[str, Any]] = self._ray.get(ref, timeout=10)
            return events
        except Exception:  # noqa: BLE001 - a dead or unreachable actor: done() and result() say what happened
            return []

    def done(self) -> bool:
        if self._result is not None:  # finished, or killed
            return True
        ready, _ = self._ray.wait([self._ref], timeout=0)
        if ready and self._result is None:
            self._finish()
        return bool(ready)

    def _finish(self) -> None:
        """Take the result and the last events, then end the actor (it holds a CPU of the cluster)."""
        try:
            self._result = self._ray.get(self._ref)
        except Exception as e:  # noqa: BLE001 - the actor died (killed, out of memory, its node lost)
            self._result = {"status": "crashed", "message": f"the Ray actor running the training ended without a "
                                                            f"result ({type(e).__name__}: {_first_line(e)})"}
        pending, self._drain_ref = self._drain_ref, None
        self._final_events = (self._take(pending) if pending is not None else []) + \
            self._take(self._actor.drain.remote())
        self._ray.kill(self._actor, no_restart=True)

    def result(self) -> dict[str, Any]:
        if self._result is None:
            self._finish()
        assert self._result is not None
        return self._result

    def request_stop(self) -> None:
        with contextlib.suppress(Exception):  # already gone: done() reports it
            self._actor.request_stop.remote()

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self._ray.kill(self._actor, no_restart=True)
            self._ray.wait([self._ref], timeout=10)  # the actor's task fails once it is gone: its CPU is free
        if self._result is None:
            self._result = {"status": "crashed", "message": "the run was killed"}

    @property
    def pid(self) -> int | None:
        if self._pid is None:
            ready, _ = self._ray.wait([self._pid_ref], timeout=0)
            if ready:
                self._pid = int(self._ray.get(self._pid_ref))
        return self._pid


class RayExecutor:
    """Runs each job's runner in a Ray actor with ``num_cpus`` CPUs (and ``num_gpus`` GPUs) of the cluster."""

    def __init__(self, *, num_cpus: float | None = None, num_gpus: float = 0) -> None:
        from tuneforge.training.distributed.cluster import connect

        self._ray = connect()
        cpus = num_cpus if num_cpus is not None else float(os.environ.get("TUNEFORGE_RAY_JOB_CPUS", "1"))
        self._actor_cls = self._ray.remote(num_cpus=cpus, num_gpus=num_gpus, max_concurrency=4,
                                           max_restarts=0)(_RunActor)

    def start(self, runner: str, spec: Any) -> RunHandle:
        actor = self._actor_cls.options(name=f"tuneforge-run-{getattr(spec, 'job_id', 'x')}-"
                                             f"{getattr(spec, 'attempt', 0)}-{os.urandom(3).hex()}").remote()
        return _RayRun(self._ray, actor, runner, spec)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else ""
