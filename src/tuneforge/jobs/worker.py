"""The worker: claims jobs from the queue and supervises their runs.

One loop per worker process: reap expired leases, supervise the running jobs (store their events and
checkpoints, renew their leases, pass on cancel/pause requests, record their outcome), and claim new jobs while
slots are free. Validation runs in a thread (it only reads files and a tokenizer); training runs through the
configured :class:`~tuneforge.jobs.executors.Executor`.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tuneforge import runs
from tuneforge.errors import TuneforgeError
from tuneforge.jobs.executors import Executor, RunHandle, ThreadExecutor, make_executor
from tuneforge.jobs.options import resolve_options
from tuneforge.jobs.queue import Claim, JobQueue
from tuneforge.jobs.runner import (
    FileRef,
    RunSpec,
    ValidateSpec,
    checkpoint_metrics,
    checkpoint_runs,
    complete_checkpoints,
    scrub_paths,
    train_values,
)
from tuneforge.jobs.service import AUTO_EPOCHS, model_name, resolve_base_for_training
from tuneforge.settings import Settings
from tuneforge.store.models import Tenant
from tuneforge.store.repositories import FileRepo, checkpoint_model_id, checkpoint_storage_key
from tuneforge.store.storage import Storage
from tuneforge.tasks import get_task

__all__ = ["Worker"]

log = logging.getLogger(__name__)

TRAIN_RUNNER = "tuneforge.jobs.runner:run_training"
VALIDATE_RUNNER = "tuneforge.jobs.runner:validate_files"
#: files validated at once besides the training slots (validation is short and must not wait behind trainings)
VALIDATION_SLOTS = 1


@dataclass
class _Active:
    claim: Claim
    handle: RunHandle
    work_root: Path | None = None
    model_id: str | None = None
    next_beat: float = 0.0
    control: str | None = None
    recorded_steps: set[int] = field(default_factory=set)


class Worker:
    """Trains up to ``slots`` jobs at once (and validates the files of one more). ``run(stop)`` loops until ``stop``
    is set, then gives its jobs back."""

    def __init__(self, *, sessions: sessionmaker[Session], settings: Settings, storage: Storage,
                 executor: Executor | None = None, slots: int = 1, name: str | None = None,
                 train_runner: str = TRAIN_RUNNER, validate_runner: str = VALIDATE_RUNNER) -> None:
        self.sessions = sessions
        self.settings = settings
        self.storage = storage
        self.queue = JobQueue(sessions, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts,
                              retry_backoff_seconds=settings.retry_backoff_seconds)
        self.executor = executor or make_executor(settings.executor)
        self.validator = ThreadExecutor()
        self.slots = slots
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"
        self.train_runner = train_runner
        self.validate_runner = validate_runner
        self.active: dict[str, _Active] = {}
        self._next_reap = 0.0

    # ----------------------------------------------------------------------------------------------- the loop
    def run(self, stop: threading.Event) -> None:
        log.info("worker %s started (%d slot(s))", self.name, self.slots)
        try:
            while not stop.is_set():
                try:
                    busy = self.tick()
                except Exception:  # noqa: BLE001 - a database hiccup must not end the worker
                    log.exception("worker %s: error in its loop; retrying", self.name)
                    busy = False
                stop.wait(0.2 if busy or self.active else self.settings.poll_seconds)
        finally:
            self.shutdown()

    def tick(self) -> bool:
        """One pass of the loop; True when it did something (so the next pass comes sooner)."""
        now = time.monotonic()
        if now >= self._next_reap:
            self.queue.reap()
            self._next_reap = now + min(self.settings.lease_seconds / 2, 10.0)
        for job_id in list(self.active):
            self._supervise(self.active[job_id])
        started = False
        while True:
            phases = [p for p, n in self._in_use().items() if n < (self.slots if p == "train" else VALIDATION_SLOTS)]
            statuses = tuple({"train": "queued", "validate": "validating_files"}[p] for p in phases)
            claim = self.queue.claim(self.name, statuses) if statuses else None
            if claim is None:
                break
            self._start(claim)
            started = True
        return started

    def _in_use(self) -> dict[str, int]:
        used = {"validate": 0, "train": 0}
        for run in self.active.values():
            used[run.claim.phase] += 1
        return used

    def run_until_idle(self, timeout: float = 120.0) -> None:
        """Tick until no job is running or claimable (tests and one-shot runs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick()
            if not self.active and self.queue.claim_preview() is None:
                return
            time.sleep(0.05)
        raise TimeoutError(f"jobs still running after {timeout} s: {', '.join(self.active)}")

    # ---------------------------------------------------------------------------------------------- starting
    def _start(self, claim: Claim) -> None:
        try:
            if claim.phase == "validate":
                handle = self.validator.start(self.validate_runner, self._validate_spec(claim))
                self.active[claim.job_id] = _Active(claim, handle)
                return
            spec, model_id = self._train_spec(claim)
            handle = self.executor.start(self.train_runner, spec)
            self.active[claim.job_id] = _Active(claim, handle, Path(spec.work_root), model_id)
            self.queue.record(claim, [{"message": f"Training started (attempt {claim.training_attempt}).",
                                       "data": {"pid": handle.pid, "worker": self.name}}])
        except TuneforgeError as e:
            self.queue.fail(claim, {"code": getattr(e, "code", None) or "invalid_request",
                                    "param": getattr(e, "param", None), "message": e.message}, retryable=False)
        except Exception as e:  # noqa: BLE001
            log.exception("could not start job %s", claim.job_id)
            self.queue.fail(claim, {"code": "worker_error", "param": None,
                                    "message": scrub_paths(f"{type(e).__name__}: {e}")}, retryable=True)

    def _file_refs(self, s: Session, claim: Claim) -> tuple[FileRef, FileRef | None]:
        files = FileRepo(s, claim.tenant_id)
        refs: list[FileRef | None] = []
        for fid, param in ((claim.job["training_file_id"], "training_file"),
                           (claim.job["validation_file_id"], "validation_file")):
            if fid is None:
                refs.append(None)
                continue
            f = files.get(fid)
            refs.append(FileRef(str(self.storage.local_path(f.storage_key)), f.id, f.filename, param))
        training = refs[0]
        assert training is not None
        return training, refs[1]

    def _validate_spec(self, claim: Claim) -> ValidateSpec:
        j = claim.job
        with self.sessions() as s:
            training, validation = self._file_refs(s, claim)
            base = resolve_base_for_training(s, self.settings, self.storage, claim.tenant_id, j["base_model"])
        values = train_values(task=j["task"], base_model=base, data=training.path, eval_data=None, seed=j["seed"],
                              hyperparameters=j["hyperparameters"], options=j["options"], method=j["method"])
        epochs = values.get("epochs", AUTO_EPOCHS)
        return ValidateSpec(claim.job_id, j["task"], base, training, validation, j["options"],
                            epochs if epochs == "auto" else float(epochs), str(self.settings.cache_dir),
                            method=j["method"])

    def _train_spec(self, claim: Claim) -> tuple[RunSpec, str]:
        j = claim.job
        with self.sessions() as s:
            training, validation = self._file_refs(s, claim)
            base = resolve_base_for_training(s, self.settings, self.storage, claim.tenant_id, j["base_model"])
            options = resolve_options(s, self.storage, claim.tenant_id, j["options"])  # ids -> the tenant's paths
            tenant = s.get(Tenant, claim.tenant_id)
            assert tenant is not None
            model_id = model_name(base_model=j["base_model"], tenant=tenant.name, suffix=j["suffix"],
                                  job_id=claim.job_id)
        values = train_values(task=j["task"], base_model=base, data=training.path,
                              eval_data=validation.path if validation else None, seed=j["seed"],
                              hyperparameters=j["hyperparameters"], options=options, method=j["method"])
        mult = j["hyperparameters"].get("learning_rate_multiplier", "auto")
        if mult not in (None, "auto"):
            values["learning_rate_multiplier"] = mult
        threads = self.settings.train_threads or max(1, (os.cpu_count() or 1) // max(1, self.slots))
        spec = RunSpec(claim.job_id, claim.attempt, str(self.settings.work_dir / claim.job_id), values,
                       tuple(f for f in (training, validation) if f is not None), str(self.settings.cache_dir),
                       torch_threads=threads, training_attempt=claim.training_attempt)
        return spec, model_id

    # ----------------------------------------------------------------------------------------- supervising
    def _supervise(self, run: _Active) -> None:
        claim = run.claim
        if not self.queue.record(claim, run.handle.events()):
            self._abandon(run, "its lease was taken over")
            return
        now = time.monotonic()
        if now >= run.next_beat:
            run.next_beat = now + self.settings.heartbeat_seconds
            ours, control = self.queue.heartbeat(claim)
            if not ours:
                self._abandon(run, "its lease was lost")
                return
            if control and run.control is None:
                run.control = control
                run.handle.request_stop()
                self.queue.record(claim, [{"message": f"{control.capitalize()} requested; stopping at the next "
                                                      "step."}])
            self._record_checkpoints(run)
        if run.handle.done():
            self.queue.record(claim, run.handle.events())
            self._record_checkpoints(run)
            del self.active[claim.job_id]
            self._finish(run, run.handle.result())

    def _record_checkpoints(self, run: _Active, folder: Path | None = None) -> None:
        if run.work_root is None:
            return
        folder = folder or run.work_root / f"attempt-{run.claim.attempt}"
        generative = bool(get_task(run.claim.job["task"]).generative)
        new = [(step, checkpoint_metrics(path, step, generative=generative))
               for step, path in complete_checkpoints(folder) if step not in run.recorded_steps]
        if new and self.queue.record(run.claim, checkpoints=new):
            run.recorded_steps.update(step for step, _ in new)

    def _abandon(self, run: _Active, why: str) -> None:
        log.warning("job %s attempt %d: %s; stopping its run", run.claim.job_id, run.claim.attempt, why)
        run.handle.kill()
        self.active.pop(run.claim.job_id, None)

    def _finish(self, run: _Active, result: dict[str, Any]) -> None:
        claim, status = run.claim, result.get("status")
        if claim.phase == "validate":
            if status == "valid":
                self.queue.finish_validation(claim, estimated_tokens=result.get("estimated_tokens"))
            elif status == "failed":
                self.queue.finish_validation(claim, error=result["error"])
            else:
                self.queue.fail(claim, {"code": "validation_error", "param": None,
                                        "message": result.get("message", "validation crashed")}, retryable=True)
            return
        assert run.work_root is not None and run.model_id is not None
        if status == "succeeded":
            out = Path(result["output"])
            self._record_checkpoints(run, out)
            # the latest checkpoints become models of their own (ft:...:ckpt-step-N), published with the model
            servable = checkpoint_runs(out, run.work_root / "checkpoint-models")
            if not claim.job["options"].get("keep_checkpoints"):
                shutil.rmtree(runs.checkpoints_dir(out), ignore_errors=True)
            key = f"models/{claim.tenant_id}/{claim.job_id}"

            def publish() -> int:
                size = self.storage.put_dir(key, out)
                return size + sum(self.storage.put_dir(checkpoint_storage_key(key, step), folder)
                                  for step, folder in servable)

            summary = dict(result.get("summary") or {})
            if servable:
                summary["checkpoint_models"] = [checkpoint_model_id(run.model_id, step) for step, _ in servable]
            if self.queue.complete(claim, model_id=run.model_id, storage_key=key, publish=publish,
                                   trained_tokens=int(result.get("trained_tokens") or 0), summary=summary,
                                   final_metrics=result.get("final_metrics") or {},
                                   hyperparameters=result.get("hyperparameters") or {}):
                shutil.rmtree(run.work_root, ignore_errors=True)
        elif status == "stopped":
            if run.control:
                if self.queue.stop(claim, run.control) and run.control == "cancel":
                    shutil.rmtree(run.work_root, ignore_errors=True)
            else:
                self.queue.release(claim, "The worker stopped")
        elif status == "failed":
            retryable = bool(result.get("retryable"))
            if self.queue.fail(claim, result["error"], retryable=retryable) and not retryable:
                shutil.rmtree(run.work_root, ignore_errors=True)
        else:
            self.queue.fail(claim, {"code": "training_crashed", "param": None,
                                    "message": result.get("message", "the training crashed")}, retryable=True)

    # ---------------------------------------------------------------------------------------------- shutdown
    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the runs at their next step (leaving checkpoints) and give their jobs back to the queue."""
        if not self.active:
            return
        for run in self.active.values():
            run.handle.request_stop()
        deadline = time.monotonic() + timeout
        while self.active and time.monotonic() < deadline:
            for job_id in list(self.active):
                run = self.active[job_id]
                if run.handle.done():
                    self.queue.record(run.claim, run.handle.events())
                    self._record_checkpoints(run)
                    del self.active[job_id]
                    result = run.handle.result()
                    if result.get("status") == "stopped" and not run.control:
                        self.queue.release(run.claim, "The worker shut down")
                    else:
                        self._finish(run, result)
            time.sleep(0.1)
        for run in list(self.active.values()):
            run.handle.kill()
            self.queue.release(run.claim, "The worker shut down")
        self.active.clear()
