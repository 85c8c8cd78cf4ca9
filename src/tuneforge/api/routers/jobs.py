"""/v1/fine_tuning/jobs: create, list, retrieve, cancel, pause, resume; events and checkpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from tuneforge.api.deps import IdempotencyKey, Jobs, SessionDep, SettingsDep, StorageDep, TrainPrincipal
from tuneforge.api.idempotency import fingerprint, idempotent
from tuneforge.api.schemas import CheckpointPublic, EventPublic, Hyperparameters, JobCreate, JobPublic, ListPublic
from tuneforge.errors import ConfigError, InvalidRequestError
from tuneforge.jobs.progress import estimated_finish, result_file
from tuneforge.jobs.service import JobRequest, cancel_job, create_job, model_name, pause_job, resume_job
from tuneforge.store.models import Job
from tuneforge.store.storage import Storage

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])

_KNOWN = set(JobCreate.model_fields)


def to_request(body: JobCreate) -> JobRequest:
    """The body in TuneForge's terms: OpenAI's ``method`` (or the older top-level ``hyperparameters``) as the job's
    method type and hyperparameters, the extra fields as training options."""
    problems = []
    method = body.method
    kind = method.type if method is not None else "supervised"
    if kind == "reinforcement":
        raise InvalidRequestError("method.type: 'reinforcement' (reinforcement fine-tuning with graders) is not "
                                  "available here; use 'supervised', or 'dpo' for preference pairs.",
                                  param="method.type", code="unsupported_method")
    hp: Hyperparameters | None = body.hyperparameters
    if method is not None and kind == "dpo":
        if body.hyperparameters is not None:
            problems.append("hyperparameters: give the hyperparameters of a dpo job in method.dpo.hyperparameters")
        hp = method.dpo.hyperparameters if method.dpo is not None else None
    elif method is not None and method.supervised is not None:
        hp = method.supervised.hyperparameters
    if method is not None and kind == "supervised" and method.dpo is not None:
        problems.append("method.dpo: given with method.type 'supervised' (set method.type to 'dpo')")
    hyper = (hp.checked().model_dump() if hp is not None else {})
    if body.integrations:
        problems.append("integrations: not supported")
    meta = body.metadata or {}
    if len(meta) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in meta.items()):
        problems.append("metadata: at most 16 pairs, keys up to 64 and values up to 512 characters")
    task = meta.get("task") or None  # None: inferred from the training file's format
    if problems:
        raise ConfigError(problems, hint="Fix these fields of the request.")
    options = {k: v for k, v in (body.model_extra or {}).items() if k not in _KNOWN}
    return JobRequest(model=body.model, training_file=body.training_file, validation_file=body.validation_file,
                      task=task, hyperparameters=hyper, options=options, suffix=body.suffix, seed=body.seed,
                      metadata=body.metadata, method=kind)


def _public(session: Session, storage: Storage, job: Job) -> JobPublic:
    results = result_file(session, storage, job)
    return JobPublic.of(job, estimated_finish=estimated_finish(session, job),
                        result_files=[results.id] if results else [])


@router.post("", response_model=JobPublic, summary="Create a fine-tuning job")
def create(body: JobCreate, principal: TrainPrincipal, session: SessionDep, settings: SettingsDep,
           storage: StorageDep, idempotency_key: IdempotencyKey = None) -> object:
    req = to_request(body)
    return idempotent(session, tenant_id=principal.tenant_id, key=idempotency_key,
                      endpoint="POST /v1/fine_tuning/jobs", request_hash=fingerprint(body.model_dump(mode="json")),
                      create=lambda: JobPublic.of(create_job(session, principal=principal, settings=settings,
                                                             req=req, storage=storage)))


@router.get("", response_model=ListPublic, summary="List fine-tuning jobs")
def list_jobs(jobs: Jobs, storage: StorageDep, after: str | None = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20, status: str | None = None) -> ListPublic:
    page = jobs.list(after=after, limit=limit, where=(Job.status == status) if status else None)
    return ListPublic.of([_public(jobs.session, storage, j) for j in page.data], page.has_more)


@router.get("/{fine_tuning_job_id}", response_model=JobPublic, summary="Retrieve a fine-tuning job")
def retrieve(fine_tuning_job_id: str, jobs: Jobs, storage: StorageDep) -> JobPublic:
    return _public(jobs.session, storage, jobs.get(fine_tuning_job_id))


@router.post("/{fine_tuning_job_id}/cancel", response_model=JobPublic, summary="Cancel a fine-tuning job")
def cancel(fine_tuning_job_id: str, principal: TrainPrincipal, session: SessionDep, storage: StorageDep) -> JobPublic:
    """The job is ``cancelled`` at once; a running training stops at its next step."""
    return _public(session, storage, cancel_job(session, tenant_id=principal.tenant_id, job_id=fine_tuning_job_id))


@router.post("/{fine_tuning_job_id}/pause", response_model=JobPublic, summary="Pause a fine-tuning job")
def pause(fine_tuning_job_id: str, principal: TrainPrincipal, session: SessionDep, storage: StorageDep) -> JobPublic:
    return _public(session, storage, pause_job(session, tenant_id=principal.tenant_id, job_id=fine_tuning_job_id))


@router.post("/{fine_tuning_job_id}/resume", response_model=JobPublic, summary="Resume a paused fine-tuning job")
def resume(fine_tuning_job_id: str, principal: TrainPrincipal, session: SessionDep, storage: StorageDep) -> JobPublic:
    return _public(session, storage, resume_job(session, principal=principal, job_id=fine_tuning_job_id))


@router.get("/{fine_tuning_job_id}/events", response_model=ListPublic, summary="List a job's events")
def events(fine_tuning_job_id: str, jobs: Jobs, after: str | None = None,
           limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> ListPublic:
    page = jobs.events(fine_tuning_job_id, after=after, limit=limit)
    return ListPublic.of([EventPublic.of(e) for e in page.data], page.has_more)


@router.get("/{fine_tuning_job_id}/checkpoints", response_model=ListPublic, summary="List a job's checkpoints")
def checkpoints(fine_tuning_job_id: str, jobs: Jobs, principal: TrainPrincipal, after: str | None = None,
                limit: Annotated[int, Query(ge=1, le=100)] = 10) -> ListPublic:
    job = jobs.get(fine_tuning_job_id)
    model = job.fine_tuned_model or model_name(base_model=job.base_model, tenant=principal.tenant_name,
                                               suffix=job.suffix, job_id=job.id)
    page = jobs.checkpoints(fine_tuning_job_id, after=after, limit=limit)
    return ListPublic.of([CheckpointPublic.of(c, model) for c in page.data], page.has_more)
