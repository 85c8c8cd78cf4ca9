"""Tenant-scoped repositories: the one place where queries are filtered by tenant.

A repository is built for one tenant; ``get`` of another tenant's object raises the same
:class:`~tuneforge.errors.NotFoundError` as a missing one, so ids from other tenants reveal nothing. Routes and
services never write ``where(tenant_id == ...)`` themselves: every repository, the solutions' too, subclasses
:class:`TenantRepo` and starts its queries from ``self.select(...)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar, cast

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from tuneforge.errors import NotFoundError
from tuneforge.store.base import TenantScoped
from tuneforge.store.models import ApiKey, Checkpoint, File, IdempotencyRecord, Job, JobEvent, Model, UsageRecord

__all__ = ["ACTIVE_STATUSES", "ApiKeyRepo", "FileRepo", "IdempotencyRepo", "JobRepo", "ModelRepo", "Page", "TenantRepo",
           "UsageRepo", "checkpoint_model_id", "checkpoint_storage_key"]

T = TypeVar("T")
P = TypeVar("P")

#: statuses that hold one of the tenant's concurrent-job slots
ACTIVE_STATUSES = ("validating_files", "queued", "running")


class Page(Generic[P]):
    def __init__(self, data: Sequence[P], has_more: bool) -> None:
        self.data = list(data)
        self.has_more = has_more


class TenantRepo(Generic[T]):
    """The rows of one tenant-owned table (a :class:`~tuneforge.store.base.TenantScoped` model) seen by one tenant.

    Subclasses set ``model`` and, for the not-found message, ``noun`` and ``param``. Every query starts from
    :meth:`select`, which filters by tenant; another tenant's row is :class:`NotFoundError`, like a missing one.
    """

    model: ClassVar[type[Any]]
    noun: ClassVar[str] = "object"
    param: ClassVar[str | None] = None

    def __init__(self, session: Session, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def select(self, *columns: Any, of: type[TenantScoped] | None = None) -> Select[Any]:
        """``SELECT columns`` (default: whole rows) from ``of`` (default: this repository's table), only this
        tenant's rows. ``of`` is for the other tenant-owned tables a repository reads (a session's turns)."""
        table = of or self.model
        return select(*(columns or (table,))).where(table.tenant_id == self.tenant_id)

    def sum(self, column: Any, *where: Any) -> int:
        """The sum of ``column`` over this tenant's rows (those matching ``where``); 0 when there are none."""
        return int(self.session.scalar(self.select(func.coalesce(func.sum(column), 0)).where(*where)) or 0)

    def find(self, id: Any, *, for_update: bool = False) -> T | None:
        q = self.select().where(self.model.id == id)
        if for_update:
            q = q.with_for_update()
        return cast(T | None, self.session.scalar(q))

    def get(self, id: Any, *, for_update: bool = False) -> T:
        obj = self.find(id, for_update=for_update)
        if obj is None:
            raise NotFoundError(f"No such {self.noun}: '{id}'", param=self.param)
        return obj

    def add(self, obj: T) -> T:
        cast(Any, obj).tenant_id = self.tenant_id
        self.session.add(obj)
        return obj

    def delete(self, obj: T) -> None:
        if cast(Any, obj).tenant_id != self.tenant_id:
            raise NotFoundError(f"No such {self.noun}: '{cast(Any, obj).id}'", param=self.param)
        self.session.delete(obj)

    def list(self, *, after: str | None = None, limit: int = 20, where: Any = None) -> Page[T]:
        """Newest first; ``after`` is the id of the last object of the previous page."""
        q = self.select()
        if where is not None:
            q = q.where(where)
        if after:
            cursor = cast(Any, self.get(after))
            q = q.where(or_(self.model.created_at < cursor.created_at,
                            and_(self.model.created_at == cursor.created_at, self.model.id < cursor.id)))
        rows = list(self.session.scalars(q.order_by(self.model.created_at.desc(), self.model.id.desc())
                                         .limit(limit + 1)))
        return Page(cast(list[T], rows[:limit]), len(rows) > limit)


class FileRepo(TenantRepo[File]):
    model = File
    noun = "file"
    param = "file_id"

    def bytes_used(self) -> int:
        return self.sum(File.bytes)


class ApiKeyRepo(TenantRepo[ApiKey]):
    """The tenant's API keys (their hashes and display prefixes; secrets are never stored)."""

    model = ApiKey
    noun = "API key"
    param = "key_id"


#: a checkpoint's model id: ``<fine_tuned_model>:ckpt-step-<N>`` (the id the job's checkpoints list shows)
_CHECKPOINT_ID = re.compile(r"^(?P<model>.+):ckpt-step-(?P<step>[0-9]{1,9})$")


def checkpoint_model_id(model_id: str, step: int) -> str:
    return f"{model_id}:ckpt-step-{step}"


def checkpoint_storage_key(model_key: str, step: int) -> str:
    """Where the servable run folder of a model's checkpoint at ``step`` is kept: inside the model's own key, so
    deleting the model deletes its checkpoints too."""
    return f"{model_key}/ckpt-step-{step}"


#: the method of the job row that records an imported run (``tuneforge.jobs.imports``); its suffix is the name
IMPORT_METHOD = "import"


class ModelRepo(TenantRepo[Model]):
    model = Model
    noun = "model"
    param = "model"

    def find(self, id: Any, *, for_update: bool = False) -> Model | None:
        """A model by id, or an imported run by the name it was imported as (issue 20: bring your own run)."""
        found = super().find(id, for_update=for_update)
        if found is not None or not isinstance(id, str) or id.startswith("ft:") or ":" in id:
            return found
        q = (self.select().join(Job, Job.id == Model.job_id)
             .where(Job.tenant_id == self.tenant_id, Job.method == IMPORT_METHOD, Job.suffix == id)
             .order_by(Model.created_at.desc()).limit(1))
        return cast(Model | None, self.session.scalar(q.with_for_update() if for_update else q))

    def bytes_used(self) -> int:
        return self.sum(Model.bytes)

    def servable(self, model_id: str) -> Model:
        """A model to run inference with: one of the tenant's fine-tuned models, or one of their checkpoints by its
        ``<model>:ckpt-step-<N>`` id (an unsaved :class:`Model` whose ``storage_key`` is the checkpoint's folder;
        whether that folder was kept is the storage's to say). Anything else, another tenant's included, is
        :class:`NotFoundError`."""
        found = self.find(model_id)
        if found is not None:
            return found
        m = _CHECKPOINT_ID.match(model_id)
        if m is not None:
            parent, step = self.find(m["model"]), int(m["step"])
            if parent is not None and self.session.scalar(
                    select(Checkpoint.id).where(Checkpoint.job_id == parent.job_id, Checkpoint.step == step)):
                return Model(id=model_id, tenant_id=parent.tenant_id, job_id=parent.job_id,
                             base_model=parent.base_model, task=parent.task,
                             storage_key=checkpoint_storage_key(parent.storage_key, step), bytes=0,
                             created_at=parent.created_at)
        raise NotFoundError(f"No such {self.noun}: '{model_id}'", param=self.param)


class JobRepo(TenantRepo[Job]):
    model = Job
    noun = "fine-tuning job"
    param = "fine_tuning_job_id"

    def count_active(self) -> int:
        return int(self.session.scalar(self.select(func.count()).where(Job.status.in_(ACTIVE_STATUSES))) or 0)

    def using_file(self, file_id: str) -> list[str]:
        """Ids of active jobs that will read ``file_id``."""
        return list(self.session.scalars(self.select(Job.id).where(
            Job.status.in_((*ACTIVE_STATUSES, "paused")),
            or_(Job.training_file_id == file_id, Job.validation_file_id == file_id))))

    def events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> Page[JobEvent]:
        """A job's events, newest first (the job is looked up in this tenant first)."""
        return self._of_job(job_id, JobEvent, JobEvent.seq, after=after, limit=limit, noun="event")

    def checkpoints(self, job_id: str, *, after: str | None = None, limit: int = 10) -> Page[Checkpoint]:
        """A job's checkpoints, latest step first."""
        return self._of_job(job_id, Checkpoint, Checkpoint.step, after=after, limit=limit, noun="checkpoint")

    def _of_job(self, job_id: str, model: type[Any], order: Any, *, after: str | None, limit: int,
                noun: str) -> Page[Any]:
        """Rows of ``model`` that belong to one of this tenant's jobs, highest ``order`` first; ``after`` is the
        id of the last row of the previous page."""
        self.get(job_id)
        q = select(model).where(model.job_id == job_id)
        if after:
            position = self.session.scalar(select(order).where(model.job_id == job_id, model.id == after))
            if position is None:
                raise NotFoundError(f"No such {noun}: '{after}'", param="after")
            q = q.where(order < position)
        rows = list(self.session.scalars(q.order_by(order.desc()).limit(limit + 1)))
        return Page(rows[:limit], len(rows) > limit)


class UsageRepo(TenantRepo[UsageRecord]):
    """The tenant's rows of the usage ledger."""

    model = UsageRecord
    noun = "usage record"

    def rows(self, *, start: datetime | None = None, end: datetime | None = None) -> list[UsageRecord]:
        q = self.select()
        if start is not None:
            q = q.where(UsageRecord.period_start >= start)
        if end is not None:
            q = q.where(UsageRecord.period_start < end)
        return list(self.session.scalars(q.order_by(UsageRecord.period_start, UsageRecord.model, UsageRecord.kind)))

    def total(self, kind: str, *, since: datetime) -> int:
        return self.sum(UsageRecord.quantity, UsageRecord.kind == kind, UsageRecord.period_start >= since)


class IdempotencyRepo(TenantRepo[IdempotencyRecord]):
    """The first responses to the tenant's creating requests, by Idempotency-Key."""

    model = IdempotencyRecord
    noun = "idempotency record"

    def by_key(self, key: str) -> IdempotencyRecord | None:
        return self.session.scalar(self.select().where(IdempotencyRecord.key == key))
