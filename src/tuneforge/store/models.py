"""The service's core tables (SQLAlchemy 2 declarative models); the solutions' tables are in
:mod:`tuneforge.store.solution_tables`, and :mod:`tuneforge.store.tables` gathers them all.

Every tenant-owned table mixes in :class:`~tuneforge.store.base.TenantScoped` (its ``tenant_id``); queries filter
on it in one place, the repositories in :mod:`tuneforge.store.repositories`. Fine-tuning jobs are also the rows of
the job queue (status, attempt, lease), so a state change and the queue's bookkeeping are one atomic update.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tuneforge.store.base import Base, TenantScoped
from tuneforge.store.db import utcnow

__all__ = ["ApiKey", "Checkpoint", "File", "IdempotencyRecord", "Job", "JobEvent", "Model", "Plan",
           "Tenant", "UsageRecord"]


class Plan(Base):
    """Limits sold together. A plan with ``trial_days`` is a free trial that ends that many days after signup."""

    __tablename__ = "plans"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    max_concurrent_jobs: Mapped[int] = mapped_column(Integer)
    trained_tokens_per_month: Mapped[int] = mapped_column(BigInteger)
    requests_per_minute: Mapped[int] = mapped_column(Integer)
    storage_bytes: Mapped[int] = mapped_column(BigInteger)
    #: prompt and completion tokens of chat and completions per minute (OpenAI's TPM)
    tokens_per_minute: Mapped[int] = mapped_column(Integer, default=40_000, server_default="40000")
    trial_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Tenant(Base):
    """A customer. ``q_*`` columns override the plan's limit of the same name when set."""

    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    plan_name: Mapped[str] = mapped_column(ForeignKey("plans.name"))
    trial_ends_at: Mapped[datetime | None]
    q_max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer)
    q_trained_tokens_per_month: Mapped[int | None] = mapped_column(BigInteger)
    q_requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    q_storage_bytes: Mapped[int | None] = mapped_column(BigInteger)
    q_tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(TenantScoped, Base):
    """An API key: only the SHA-256 of the secret is kept, and its first characters for display."""

    __tablename__ = "api_keys"
    tenant_index = True
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(100))  # space-separated
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class File(TenantScoped, Base):
    __tablename__ = "files"
    __table_args__ = (Index("ix_files_tenant_created", "tenant_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="processed")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(TenantScoped, Base):
    """A fine-tuning job, and its row in the job queue.

    Queue columns: ``attempt`` is a fencing token, incremented by every claim, that guards every write a worker
    makes; ``training_attempt`` is the number users see (trainings started: 1 for the first, whatever the
    validation of its files and the queue's claims took); ``failures`` counts attempts that ended because their
    worker died or crashed (up to ``max_attempts``); ``lease_owner``/``lease_expires_at`` is the lease a worker
    renews by heartbeats; ``control`` carries a cancel or pause request to the worker running the job;
    ``run_after`` delays a retry.
    """

    __tablename__ = "fine_tuning_jobs"
    __table_args__ = (Index("ix_jobs_tenant_created", "tenant_id", "created_at"),
                      Index("ix_jobs_claim", "status", "run_after"))
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    base_model: Mapped[str] = mapped_column(String(255))
    task: Mapped[str] = mapped_column(String(32))
    training_file_id: Mapped[str] = mapped_column(String(40))
    validation_file_id: Mapped[str | None] = mapped_column(String(40))
    suffix: Mapped[str | None] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(BigInteger)
    #: OpenAI's method type: "supervised" or "dpo" (hyperparameters holds its hyperparameters)
    method: Mapped[str] = mapped_column(String(16), default="supervised", server_default="supervised")
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    status: Mapped[str] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_param: Mapped[str | None] = mapped_column(String(64))
    fine_tuned_model: Mapped[str | None] = mapped_column(String(255))
    estimated_tokens: Mapped[int | None] = mapped_column(BigInteger)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    validated_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    training_attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    control: Mapped[str | None] = mapped_column(String(16))
    run_after: Mapped[datetime] = mapped_column(default=utcnow)


class JobEvent(Base):
    __tablename__ = "fine_tuning_job_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    level: Mapped[str] = mapped_column(String(8), default="info")
    type: Mapped[str] = mapped_column(String(16), default="message")
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkpoint(Base):
    __tablename__ = "fine_tuning_checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_checkpoint_job_step"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(TenantScoped, Base):
    """A fine-tuned model: its id is the ``fine_tuned_model`` name clients call it by."""

    __tablename__ = "models"
    __table_args__ = (Index("ix_models_tenant_created", "tenant_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(40))
    base_model: Mapped[str] = mapped_column(String(255))
    task: Mapped[str] = mapped_column(String(32))
    storage_key: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageRecord(TenantScoped, Base):
    """The usage ledger: one row per tenant, model, kind and UTC day, incremented in place."""

    __tablename__ = "usage"
    tenant_index = True
    __table_args__ = (UniqueConstraint("tenant_id", "model", "kind", "period_start", name="uq_usage_bucket"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(255), default="")
    kind: Mapped[str] = mapped_column(String(32))
    period_start: Mapped[datetime]
    quantity: Mapped[int] = mapped_column(BigInteger, default=0)


class IdempotencyRecord(TenantScoped, Base):
    """The first response to a creating POST, replayed for the same Idempotency-Key (``status_code`` is null
    while the first request is still running)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "key", name="uq_idempotency_tenant_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255))
    endpoint: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
