"""FastAPI dependencies, as ``Annotated`` aliases routes declare: ``SessionDep``, ``CurrentPrincipal``,
``TrainPrincipal``, ``Files`` ... Authentication, scopes, the trial end and the requests-per-minute limit are
checked here, once for every route."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from tuneforge.api.middleware import EXTRA_HEADERS, METERED
from tuneforge.api.state import ServiceState
from tuneforge.errors import PermissionDeniedError, QuotaExceededError, RateLimitError
from tuneforge.settings import Settings
from tuneforge.store.repositories import FileRepo, JobRepo, ModelRepo, UsageRepo
from tuneforge.store.storage import Storage
from tuneforge.store.tenants import Principal, authenticate

__all__ = ["AdminPrincipal", "CurrentPrincipal", "Files", "IdempotencyKey", "Jobs", "Models", "PredictPrincipal",
           "SessionDep", "SettingsDep", "StateDep", "StorageDep", "TrainPrincipal", "Usage", "charge_tokens",
           "meter_model", "refund_tokens"]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer tf_...`")


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.tuneforge
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_storage(state: StateDep) -> Storage:
    return state.storage


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
SessionDep = Annotated[Session, Depends(get_session)]


def get_principal(request: Request, state: StateDep, session: SessionDep,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    principal = authenticate(session, creds.credentials if creds else None)
    session.rollback()  # end the read transaction now: the request may take a while
    if principal.trial_expired and request.method not in ("GET", "HEAD"):
        assert principal.trial_ends_at is not None
        raise PermissionDeniedError(
            f"The free trial of '{principal.tenant_name}' ended on {principal.trial_ends_at:%Y-%m-%d}; your data "
            "can still be read. Move to a paid plan to train and predict again.", code="trial_expired")
    limit = principal.quotas.requests_per_minute
    decision = state.ratelimiter.hit(principal.tenant_id, limit)
    headers = request.scope.get(EXTRA_HEADERS)
    if headers is not None:
        headers.update({"x-ratelimit-limit-requests": str(decision.limit),
                        "x-ratelimit-remaining-requests": str(decision.remaining),
                        "x-ratelimit-reset-requests": f"{decision.reset_seconds:.3f}s"})
    if not decision.allowed:
        raise RateLimitError(f"Rate limit reached: {limit} requests per minute. Try again in "
                             f"{decision.reset_seconds:.1f} s.", resource="requests", limit=limit, remaining=0,
                             reset_seconds=decision.reset_seconds)
    metered = request.scope.get(METERED)
    if metered is not None:
        metered["tenant_id"] = principal.tenant_id
    return principal


def charge_tokens(request: Request, state: ServiceState, principal: Principal, tokens: int) -> None:
    """Take ``tokens`` (a generation's prompt and its most reply tokens, OpenAI's estimate) from the tenant's
    tokens-per-minute limit, with ``x-ratelimit-*-tokens`` headers; refused (429) when they do not fit. What a
    reply does not use is given back with :func:`refund_tokens`."""
    limit = principal.quotas.tokens_per_minute
    decision = state.ratelimiter.hit(f"{principal.tenant_id}:tokens", limit, tokens)
    headers = request.scope.get(EXTRA_HEADERS)
    if headers is not None:
        headers.update({"x-ratelimit-limit-tokens": str(decision.limit),
                        "x-ratelimit-remaining-tokens": str(decision.remaining),
                        "x-ratelimit-reset-tokens": f"{decision.reset_seconds:.3f}s"})
    if decision.allowed:
        return
    if tokens > limit:  # no wait makes it fit: a quota error, which clients do not retry
        raise QuotaExceededError(f"Request too large: it may take {tokens:,} tokens (the prompt and max_tokens), "
                                 f"more than your limit of {limit:,} tokens per minute. Lower max_tokens or shorten "
                                 "the prompt.", resource="tokens", limit=limit, remaining=0,
                                 reset_seconds=decision.reset_seconds, code="request_too_large")
    raise RateLimitError(f"Rate limit reached: {limit:,} tokens per minute (this request may take {tokens:,}). Try "
                         f"again in {decision.reset_seconds:.1f} s.", resource="tokens", limit=limit, remaining=0,
                         reset_seconds=decision.reset_seconds, code="tokens_limit_exceeded")


def refund_tokens(state: ServiceState, principal: Principal, tokens: int) -> None:
    """Give back tokens :func:`charge_tokens` took that the reply did not use."""
    state.ratelimiter.refund(f"{principal.tenant_id}:tokens", tokens)


def meter_model(request: Request, model: str) -> None:
    """Count this request against ``model`` in the usage ledger (inference routes)."""
    metered = request.scope.get(METERED)
    if metered is not None:
        metered["model"] = model


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def _scoped(scope: str) -> Callable[[Principal], Principal]:
    def dep(principal: CurrentPrincipal) -> Principal:
        principal.require(scope)
        return principal

    dep.__name__ = f"require_{scope}"
    return dep


TrainPrincipal = Annotated[Principal, Depends(_scoped("train"))]
PredictPrincipal = Annotated[Principal, Depends(_scoped("predict"))]
AdminPrincipal = Annotated[Principal, Depends(_scoped("admin"))]


def _files(session: SessionDep, principal: TrainPrincipal) -> FileRepo:
    return FileRepo(session, principal.tenant_id)


def _jobs(session: SessionDep, principal: TrainPrincipal) -> JobRepo:
    return JobRepo(session, principal.tenant_id)


def _models(session: SessionDep, principal: CurrentPrincipal) -> ModelRepo:
    return ModelRepo(session, principal.tenant_id)


def _usage(session: SessionDep, principal: AdminPrincipal) -> UsageRepo:
    return UsageRepo(session, principal.tenant_id)


Files = Annotated[FileRepo, Depends(_files)]
Jobs = Annotated[JobRepo, Depends(_jobs)]
Models = Annotated[ModelRepo, Depends(_models)]
Usage = Annotated[UsageRepo, Depends(_usage)]

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255,
                                              description="Replays the first response to a request with this key.")]
