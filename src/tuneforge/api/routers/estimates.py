"""/v1/fine_tuning/estimates: what a job would train (tokens, against the month's quota) before creating it."""

from __future__ import annotations

from fastapi import APIRouter

from tuneforge.api.deps import SessionDep, SettingsDep, StorageDep, TrainPrincipal
from tuneforge.api.routers.jobs import to_request
from tuneforge.api.schemas import EstimatePublic, JobCreate
from tuneforge.jobs.service import estimate_job

router = APIRouter(prefix="/v1/fine_tuning/estimates", tags=["fine-tuning"])


@router.post("", response_model=EstimatePublic, summary="Estimate the tokens a fine-tuning job would train")
def estimate(body: JobCreate, principal: TrainPrincipal, session: SessionDep, settings: SettingsDep,
             storage: StorageDep) -> EstimatePublic:
    """Takes the body of ``POST /v1/fine_tuning/jobs`` and validates it the same way; creates nothing."""
    return EstimatePublic(**estimate_job(session, principal=principal, settings=settings, storage=storage,
                                         req=to_request(body)))
