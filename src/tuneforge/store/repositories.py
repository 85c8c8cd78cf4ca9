"""Tenant-scoped repositories: the one place where queries are filtered by tenant.

A repository is built for one tenant; ``get`` of another tenant's object raises the same
:class:`~tuneforge.errors.NotFoundError` as a missing one, so ids from other tenants reveal nothing. Routes and
services never write ``where(tenant_id == ...)`` themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar, cast

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from tuneforge.errors import NotFoundError
from tuneforge.store.models import ApiKey, Checkpoint, File, IdempotencyRecord, Job, JobEvent, Model, UsageRecord

__all__ = ["ACTIVE_STATUSES", "ApiKeyRepo", "FileRepo", "IdempotencyRepo", "JobRepo", "ModelRepo", "Page", "UsageRepo"]

T = TypeVar("T", ApiKey, File, Job, Model)
P = TypeVar("P")

#: statuses that hold one of the tenant's concurrent-job slots
ACTIVE_STATUSES = ("validating_files", "queued", "running")


class Page(Generic[P]):
    def __init__(self, data: Sequence[P], has_more: bool) -> None:
        self.data = list(data)
        self.has_more = has_more


class _Scoped(Generic[T]):
    model: ClassVar[type[Any]]
    noun: ClassVar[str]
    param: ClassVar[str]

    def __init__(self, session: Session, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def _select(self) -> Select[Any]:
        return select(self.model).where(self.model.tenant_id == self.tenant_id)

    def get(self, id: str, *, for_update: bool = False) -> T:
        q = self._select().where(self.model.id == id)
        if for_update:
            q = q.with_for_update()
        obj = self.session.scalar(q)
        if obj is None:
            raise NotFoundError(f"No such {self.noun}: '{id}'", param=self.param)
        return cast(T, obj)

    def add(self, obj: T) -> T:
        obj.tenant_id = self.tenant_id
        self.session.add(obj)
        return obj

    def delete(self, obj: T) -> None:
        assert obj.tenant_id == self.tenant_id
        self.session.delete(obj)

    def list(self, *, after: str | None = None, limit: int = 20, where: Any = None) -> Page[T]:
        """Newest first; ``after`` is the id of the last object of the previous page."""
        q = self._select()
        if where is not None:
            q = q.where(where)
        if after:
            cursor = self.get(after)
            q = q.where(or_(self.model.created_at < cursor.created_at,
                            and_(self.model.created_at == cursor.created_at, self.model.id < cursor.id)))
        rows = list(self.session.scalars(q.order_by(self.model.created_at.desc(), self.model.id.desc())
                                         .limit(limit + 1)))
        return Page(cast(list[T], rows[:limit]), len(rows) > limit)


class FileRepo(_Scoped[File]):
    model = File
    noun = "file"
    param = "file_id"

    def bytes_used(self) -> int:
        return int(self.session.scalar(select(func.coalesce(func.sum(File.bytes), 0))
                                       .where(File.tenant_id == self.tenant_id)) or 0)


class ApiKeyRepo(_Scoped[ApiKey]):
    """The tenant's API keys (their hashes and display prefixes; secrets are never stored)."""

    model = ApiKey
    noun = "API key"
    param = "key_id"


class ModelRepo(_Scoped[Model]):
    model = Model
    noun = "model"
    param = "model"

    def find(self, id: str) -> Model | None:
        return cast(Model | None, self.session.scalar(self._select().where(Model.id == id)))

    def bytes_used(self) -> int:
        return int(self.session.scalar(select(func.coalesce(func.sum(Model.bytes), 0))
                                       .where(Model.tenant_id == self.tenant_id)) or 0)


class JobRepo(_Scoped[Job]):
    model = Job
    noun = "fine-tuning job"
    param = "fine_tuning_job_id"

    def count_active(self) -> int:
        return int(self.session.scalar(select(func.count()).select_from(Job).where(
            Job.tenant_id == self.tenant_id, Job.status.in_(ACTIVE_STATUSES))) or 0)

    def using_file(self, file_id: str) -> list[str]:
        """Ids of active jobs that will read ``file_id``."""
        return list(self.session.scalars(select(Job.id).where(
            Job.tenant_id == self.tenant_id, Job.status.in_((*ACTIVE_STATUSES, "paused")),
            or_(Job.training_file_id == file_id, Job.validation_file_id == file_id))))

    def events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> Page[JobEvent]:
        """A job's events, newest first (the job is looked up in this tenant first)."""
        self.get(job_id)
        q = select(JobEvent).where(JobEvent.job_id == job_id)
        if after:
            seq = self.session.scalar(select(JobEvent.seq).where(JobEvent.job_id == job_id, JobEvent.id == after))
            if seq is None:
                raise NotFoundError(f"No such event: '{after}'", param="after")
            q = q.where(JobEvent.seq < seq)
        rows = list(self.session.scalars(q.order_by(JobEvent.seq.desc()).limit(limit + 1)))
        return Page(rows[:limit], len(rows) > limit)

    def checkpoints(self, job_id: str, *, after: str | None = None, limit: int = 10) -> Page[Checkpoint]:
        """A job's checkpoints, latest step first."""
        self.get(job_id)
        q = select(Checkpoint).where(Checkpoint.job_id == job_id)
        if after:
            step = self.session.scalar(select(Checkpoint.step).where(Checkpoint.job_id == job_id,
                                                                     Checkpoint.id == after))
            if step is None:
                raise NotFoundError(f"No such checkpoint: '{after}'", param="after")
            q = q.where(Checkpoint.step < step)
        rows = list(self.session.scalars(q.order_by(Checkpoint.step.desc()).limit(limit + 1)))
        return Page(rows[:limit], len(rows) > limit)


class UsageRepo:
    """The tenant's rows of the usage ledger."""

    def __init__(self, session: Session, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def rows(self, *, start: datetime | None = None, end: datetime | None = None) -> list[UsageRecord]:
        q = select(UsageRecord).where(UsageRecord.tenant_id == self.tenant_id)
        if start is not None:
            q = q.where(UsageRecord.period_start >= start)
        if end is not None:
            q = q.where(UsageRecord.period_start < end)
        return list(self.session.scalars(q.order_by(UsageRecord.period_start, UsageRecord.model, UsageRecord.kind)))

    def total(self, kind: str, *, since: datetime) -> int:
        return int(self.session.scalar(select(func.coalesce(func.sum(UsageRecord.quantity), 0)).where(
            UsageRecord.tenant_id == self.tenant_id, UsageRecord.kind == kind,
            UsageRecord.period_start >= since)) or 0)


class IdempotencyRepo:
    def __init__(self, session: Session, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def find(self, key: str) -> IdempotencyRecord | None:
        return self.session.scalar(select(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == self.tenant_id, IdempotencyRecord.key == key))

    def add(self, record: IdempotencyRecord) -> IdempotencyRecord:
        record.tenant_id = self.tenant_id
        self.session.add(record)
        return record
