"""The persistent job queue: fine-tuning jobs are its rows; at-least-once delivery with leases.

The guarantees, in the manner of River, Oban and procrastinate:

* **Atomic claim.** One ``UPDATE ... WHERE id = (SELECT ... LIMIT 1) ... RETURNING`` hands a job to exactly one
  worker: on PostgreSQL the inner select takes ``FOR UPDATE SKIP LOCKED``, so concurrent workers skip each other's
  rows instead of waiting; on SQLite the statement runs under the database's single write lock, and its
  ``status``/``lease_owner IS NULL`` conditions make it a compare-and-set.
* **Leases.** A claim carries a lease (``lease_expires_at``) that the worker renews with heartbeats. Every claim
  increments ``attempt``, a fencing token: every later write of that worker (heartbeat, events, completion) is
  conditional on ``attempt`` and ``lease_owner`` still being its own, so a worker that was presumed dead cannot
  overwrite a newer attempt.
* **Reaper.** A job whose lease expired is queued again (after a short back-off) and resumes from its last
  checkpoint, until ``max_attempts`` attempts were lost; then it fails with the reason.
* **Control.** Cancel and pause are requests in ``control``; the worker reads them with each heartbeat and stops
  the training within one step (``should_stop``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.jobs.states import CLAIMABLE
from tuneforge.store.db import is_postgres, utcnow
from tuneforge.store.ids import new_id
from tuneforge.store.models import Checkpoint, Job, JobEvent, Model, Plan, Tenant
from tuneforge.store.repositories import UsageRepo
from tuneforge.store.tenants import quotas_for
from tuneforge.store.usage import month_start, record_usage

__all__ = ["Claim", "JobQueue", "add_event"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A job handed to one worker for one attempt."""

    job_id: str
    tenant_id: str
    attempt: int
    owner: str
    phase: str  # "validate" or "train"
    failures: int = 0
    job: dict[str, Any] = field(default_factory=dict, compare=False)
    #: the attempt number users see: trainings started, 1 for the first (0 while its files are validated);
    #: ``attempt`` is the fencing token that guards the writes
    training_attempt: int = 0


def add_event(session: Session, job_id: str, message: str, *, attempt: int = 0, level: str = "info",
              type: str = "message", data: dict[str, Any] | None = None) -> JobEvent:
    event = JobEvent(id=new_id("ftevent"), job_id=job_id, attempt=attempt, level=level, type=type,
                     message=message, data=data, created_at=utcnow())
    session.add(event)
    return event


def _job_snapshot(job: Job) -> dict[str, Any]:
    return {c: getattr(job, c) for c in ("base_model", "task", "training_file_id", "validation_file_id", "suffix",
                                         "seed", "method", "hyperparameters", "options", "estimated_tokens",
                                         "tenant_id")}


class JobQueue:
    """Queue operations over a session factory. Every method is one short transaction."""

    def __init__(self, sessions: sessionmaker[Session], *, lease_seconds: float = 30.0, max_attempts: int = 3,
                 retry_backoff_seconds: float = 2.0) -> None:
        self.sessions = sessions
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.backoff = timedelta(seconds=retry_backoff_seconds)

    # ------------------------------------------------------------------------------------------------ claiming
    def claim(self, owner: str, statuses: tuple[str, ...] = CLAIMABLE) -> Claim | None:
        """Atomically take the oldest job waiting in one of ``statuses`` (files to validate, training to run), or
        return None."""
        now = utcnow()
        statuses = tuple(x for x in statuses if x in CLAIMABLE)
        with self.sessions() as s:
            pick = (select(Job.id).where(Job.status.in_(statuses), Job.lease_owner.is_(None), Job.run_after <= now)
                    .order_by(Job.created_at, Job.id).limit(1))
            if is_postgres(s):
                pick = pick.with_for_update(skip_locked=True)
            training = Job.status == "queued"
            stmt = (update(Job)
                    .where(Job.id == pick.scalar_subquery(), Job.status.in_(statuses), Job.lease_owner.is_(None))
                    .values(attempt=Job.attempt + 1,
                            training_attempt=case((training, Job.training_attempt + 1), else_=Job.training_attempt),
                            lease_owner=owner, lease_expires_at=now + self.lease,
                            heartbeat_at=now, status=case((training, "running"), else_=Job.status),
                            started_at=case((training, func.coalesce(Job.started_at, now)), else_=Job.started_at))
                    .returning(Job.id, Job.attempt, Job.status, Job.failures, Job.training_attempt)
                    .execution_options(synchronize_session=False))
            row = s.execute(stmt).first()
            if row is None:
                s.rollback()
                return None
            job = s.get(Job, row.id, populate_existing=True)
            assert job is not None
            phase = "train" if row.status == "running" else "validate"
            what = f"Attempt {row.training_attempt}: training" if phase == "train" else "Validating files"
            add_event(s, job.id, f"{what} on worker {owner}.", attempt=row.attempt,
                      data={"worker": owner, "phase": phase,
                            **({"attempt": row.training_attempt} if phase == "train" else {})})
            claim = Claim(job.id, job.tenant_id, row.attempt, owner, phase, row.failures, _job_snapshot(job),
                          training_attempt=row.training_attempt)
            s.commit()
            return claim

    def claim_preview(self) -> str | None:
        """The id of a job waiting to be claimed (now or after its back-off), without claiming it."""
        with self.sessions() as s:
            job_id = s.scalar(select(Job.id).where(Job.status.in_(CLAIMABLE), Job.lease_owner.is_(None)).limit(1))
            s.rollback()
            return job_id

    def _guard(self, claim: Claim, *statuses: str) -> Any:
        cond = [Job.id == claim.job_id, Job.attempt == claim.attempt, Job.lease_owner == claim.owner]
        if statuses:
            cond.append(Job.status.in_(statuses))
        return cond

    def _change_owned(self, claim: Claim, change: Callable[[Session, Job], None], *statuses: str) -> bool:
        """Apply ``change`` to the job in one transaction that holds its row lock, if ``claim`` still owns it (in
        one of ``statuses`` when given); False, and nothing written, when another attempt owns it now."""
        with self.sessions() as s:
            job = s.scalar(select(Job).where(*self._guard(claim, *statuses)).with_for_update())
            if job is None:
                s.rollback()
                return False
            change(s, job)
            s.commit()
        return True

    # ------------------------------------------------------------------------------------------ while running
    def heartbeat(self, claim: Claim) -> tuple[bool, str | None]:
        """Renew the lease. Returns (still ours, control request: None, "cancel" or "pause")."""
        now = utcnow()
        with self.sessions() as s:
            row = s.execute(update(Job).where(*self._guard(claim))
                            .values(lease_expires_at=now + self.lease, heartbeat_at=now)
                            .returning(Job.control).execution_options(synchronize_session=False)).first()
            s.commit()
        return (False, None) if row is None else (True, row.control)

    def record(self, claim: Claim, events: Iterable[dict[str, Any]] = (),
               checkpoints: Iterable[tuple[int, dict[str, Any]]] = ()) -> bool:
        """Store events and checkpoints of an attempt, if it still holds the job."""
        events, checkpoints = list(events), list(checkpoints)
        if not events and not checkpoints:
            return True
        with self.sessions() as s:
            if s.scalar(select(Job.id).where(*self._guard(claim))) is None:
                s.rollback()
                return False
            for e in events:
                add_event(s, claim.job_id, e["message"], attempt=claim.attempt, level=e.get("level", "info"),
                          type=e.get("type", "message"), data=e.get("data"))
            have = set(s.scalars(select(Checkpoint.step).where(Checkpoint.job_id == claim.job_id)))
            for step, metrics in checkpoints:
                if step in have:
                    continue
                s.add(Checkpoint(id=new_id("ftckpt"), job_id=claim.job_id, step=step, attempt=claim.attempt,
                                 metrics=metrics, created_at=utcnow()))
                add_event(s, claim.job_id, f"Checkpoint saved at step {step}.", attempt=claim.attempt,
                          data={"step": step, **metrics})
            s.commit()
        return True

    # ----------------------------------------------------------------------------------------------- outcomes
    def finish_validation(self, claim: Claim, *, error: dict[str, Any] | None = None,
                          estimated_tokens: int | None = None) -> bool:
        """End the validation phase: the job is queued for training, or fails with ``error``."""
        now = utcnow()

        def change(s: Session, job: Job) -> None:
            problem = error
            if problem is None and estimated_tokens is not None:
                problem = self._token_quota_error(s, job.tenant_id, estimated_tokens)
            job.lease_owner = job.lease_expires_at = None
            if problem is not None:
                self._set_failed(s, job, problem, attempt=claim.attempt)
            else:
                job.status, job.validated_at, job.estimated_tokens = "queued", now, estimated_tokens
                add_event(s, job.id, "Files validated; the job is queued for training.", attempt=claim.attempt,
                          data={"estimated_tokens": estimated_tokens})

        return self._change_owned(claim, change, "validating_files")

    def _token_quota_error(self, s: Session, tenant_id: str, estimate: int) -> dict[str, Any] | None:
        tenant, plan = s.execute(select(Tenant, Plan).join(Plan, Tenant.plan_name == Plan.name)
                                 .where(Tenant.id == tenant_id)).one()
        limit = quotas_for(tenant, plan).trained_tokens_per_month
        used = UsageRepo(s, tenant_id).total("trained_tokens", since=month_start())
        if used + estimate <= limit:
            return None
        return {"code": "quota_exceeded", "param": "training_file",
                "message": f"This job would train about {estimate:,} tokens, but only {max(0, limit - used):,} of "
                           f"the {limit:,} trained tokens of this month's quota are left. Use a smaller file or "
                           f"fewer epochs, or ask for a larger plan."}

    def _set_failed(self, s: Session, job: Job, error: dict[str, Any], *, attempt: int) -> None:
        job.status, job.finished_at = "failed", utcnow()
        job.error_code, job.error_message, job.error_param = error["code"], error["message"], error.get("param")
        job.lease_owner = job.lease_expires_at = job.control = None
        add_event(s, job.id, f"Fine-tuning job failed: {error['message']}", attempt=attempt, level="error",
                  data={"error": error})

    def complete(self, claim: Claim, *, model_id: str, storage_key: str, publish: Callable[[], int],
                 trained_tokens: int, summary: dict[str, Any], final_metrics: dict[str, Any] | None = None,
                 hyperparameters: dict[str, Any] | None = None) -> bool:
        """Mark the job succeeded and register its model, if this attempt still holds it.

        ``publish`` moves the finished run folder into artifact storage and returns its size; it runs inside the
        transaction, after the attempt guard matched, so a stale attempt never publishes anything.
        ``final_metrics`` (the finished model's evaluation on the whole validation file, ``full_valid_loss`` ...)
        join the metrics of the job's last checkpoint, as OpenAI reports them; ``hyperparameters`` (what the run
        trained with) replace those the job left as ``auto``.
        """
        now = utcnow()

        def change(s: Session, job: Job) -> None:
            size = publish()
            if final_metrics:
                last = s.scalar(select(Checkpoint).where(Checkpoint.job_id == job.id)
                                .order_by(Checkpoint.step.desc()).limit(1))
                if last is not None:
                    last.metrics = {**(last.metrics or {}), **final_metrics}
            if hyperparameters:
                given = job.hyperparameters or {}
                job.hyperparameters = {**given, **{k: v for k, v in hyperparameters.items()
                                                   if given.get(k, "auto") in (None, "auto")}}
            s.add(Model(id=model_id, tenant_id=job.tenant_id, job_id=job.id, base_model=job.base_model,
                        task=job.task, storage_key=storage_key, bytes=size, created_at=now))
            job.status, job.finished_at, job.fine_tuned_model = "succeeded", now, model_id
            job.trained_tokens = trained_tokens
            job.lease_owner = job.lease_expires_at = job.control = None
            record_usage(s, tenant_id=job.tenant_id, model=model_id, kind="trained_tokens", quantity=trained_tokens)
            add_event(s, job.id, f"The job has successfully completed: new model {model_id}.",
                      attempt=claim.attempt, data=summary)

        return self._change_owned(claim, change, "running")

    def fail(self, claim: Claim, error: dict[str, Any], *, retryable: bool) -> bool:
        """End an attempt that failed. A retryable failure (a crash) is retried up to ``max_attempts``."""

        def change(s: Session, job: Job) -> None:
            if retryable:
                self._retry_or_fail(s, job, attempt=claim.attempt, why=error["message"])
            else:
                self._set_failed(s, job, error, attempt=claim.attempt)

        return self._change_owned(claim, change)

    def _retry_or_fail(self, s: Session, job: Job, *, attempt: int, why: str) -> None:
        job.failures += 1
        limit = job.max_attempts or self.max_attempts
        # what users call it: training attempts count from 1; a validation is not one
        what = f"Attempt {job.training_attempt}" if job.status == "running" else "File validation"
        if job.failures >= limit:
            self._set_failed(s, job, {"code": "max_attempts_exceeded", "param": None,
                                      "message": f"{what} failed ({why}); the job failed after "
                                                 f"{job.failures} failed attempts (the limit is {limit})."},
                             attempt=attempt)
            return
        job.status = "queued" if job.status == "running" else job.status
        job.lease_owner = job.lease_expires_at = None
        job.run_after = utcnow() + self.backoff
        add_event(s, job.id, f"{what} failed ({why}); the job is queued again and will resume from "
                             f"its last checkpoint (failed attempts: {job.failures} of {limit}).",
                  attempt=attempt, level="warn", data={"failures": job.failures, "max_attempts": limit})

    def stop(self, claim: Claim, control: str) -> bool:
        """The training stopped at a cancel or pause request: record the new status."""
        return self._change_owned(claim, lambda s, job: self._apply_control(s, job, control, attempt=claim.attempt))

    def _apply_control(self, s: Session, job: Job, control: str, *, attempt: int) -> None:
        job.lease_owner = job.lease_expires_at = job.control = None
        if control == "cancel":
            job.status, job.finished_at = "cancelled", utcnow()
            add_event(s, job.id, "Fine-tuning job cancelled.", attempt=attempt)
        else:
            job.status = "paused"
            add_event(s, job.id, "Fine-tuning job paused; resume it to continue from its last checkpoint.",
                      attempt=attempt)

    def release(self, claim: Claim, reason: str) -> bool:
        """Give a job back without counting a failure (the worker is shutting down)."""

        def change(s: Session, job: Job) -> None:
            if job.control:
                self._apply_control(s, job, job.control, attempt=claim.attempt)
            else:
                job.status = "queued" if job.status == "running" else job.status
                job.lease_owner = job.lease_expires_at = None
                add_event(s, job.id, f"{reason}; the job is queued again and will resume from its last checkpoint.",
                          attempt=claim.attempt, level="warn")

        return self._change_owned(claim, change)

    # ------------------------------------------------------------------------------------------------- reaper
    def reap(self) -> list[str]:
        """Requeue (or fail, or finish cancelling/pausing) jobs whose lease expired. Returns their ids."""
        now = utcnow()
        done: list[str] = []
        with self.sessions() as s:
            q = select(Job).where(Job.lease_owner.is_not(None), Job.lease_expires_at < now)
            if is_postgres(s):
                q = q.with_for_update(skip_locked=True)
            for job in s.scalars(q).all():
                owner, attempt = job.lease_owner, job.attempt
                if job.control:
                    self._apply_control(s, job, job.control, attempt=attempt)
                else:
                    self._retry_or_fail(s, job, attempt=attempt,
                                        why=f"its worker {owner} stopped renewing its lease")
                done.append(job.id)
            s.commit()
        if done:
            log.warning("reaped %d job(s) with expired leases: %s", len(done), ", ".join(done))
        return done
