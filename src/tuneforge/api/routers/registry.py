"""/v1/registry: the tenant's model registry — numbered versions of a model name and aliases pointing at them.

Register one of the tenant's fine-tuned models (``ft:...``) as the next version of a name, move aliases
(``production``, ``candidate`` ...), roll back, delete, read the audit history. Reading needs any key; changing
needs the ``train`` scope, and every change is recorded with the key that made it. Another tenant's names are a
404, like missing ones. Inference routes serve ``name@alias``, ``name@3`` and ``name`` (``production``); a change
here is seen by the next request (:mod:`tuneforge.api.model_refs`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from tuneforge.api.deps import CurrentPrincipal, SessionDep, SettingsDep, StateDep, TrainPrincipal
from tuneforge.api.model_refs import cache_key, fine_tuned
from tuneforge.api.schemas import ListPublic
from tuneforge.errors import InvalidRequestError
from tuneforge.jobs.service import available_base_models
from tuneforge.store.registry import PRODUCTION, DbRegistry, ModelVersion, db_registry
from tuneforge.store.repositories import FileRepo, JobRepo, ModelRepo
from tuneforge.store.tenants import Principal

__all__ = ["actor_of", "router"]

router = APIRouter(prefix="/v1/registry", tags=["registry"])


def actor_of(principal: Principal) -> str:
    """Who a change made with this key is recorded as."""
    return f"{principal.tenant_name}/{principal.key_id}"


def _registry(session: SessionDep, principal: CurrentPrincipal, state: StateDep) -> DbRegistry:
    return db_registry(session, principal.tenant_id, state.storage)


RegistryDep = Annotated[DbRegistry, Depends(_registry)]


class VersionPublic(BaseModel):
    object: Literal["registry.version"] = "registry.version"
    id: str = Field(description="name@version: the reference that always means this version.")
    name: str
    version: int
    aliases: list[str]
    created_at: int
    created_by: str
    metrics: dict[str, Any]
    source: str
    parent: int | None
    has_train_data: bool

    @classmethod
    def of(cls, v: ModelVersion) -> VersionPublic:
        return cls(id=v.ref, name=v.name, version=v.version, aliases=list(v.aliases),
                   created_at=int(v.created_at.timestamp()), created_by=v.created_by, metrics=v.metrics,
                   source=v.source, parent=v.parent, has_train_data=v.train_data is not None)


class NamePublic(BaseModel):
    object: Literal["registry.name"] = "registry.name"
    id: str
    versions: int
    aliases: dict[str, int]
    latest: int | None


class EventPublic(BaseModel):
    object: Literal["registry.event"] = "registry.event"
    at: str
    actor: str
    action: str
    alias: str | None
    version: int | None
    previous: int | None
    reason: str
    metrics: dict[str, Any]


class VersionCreate(BaseModel):
    model: str = Field(min_length=1, max_length=255, description="One of your fine-tuned models (ft:...) or a "
                                                                 "kept checkpoint of one.")
    alias: str | None = Field(None, max_length=32, description="An alias to point at the new version at once.")
    reason: str = Field("", max_length=2000)


class AliasUpdate(BaseModel):
    version: int = Field(ge=1, description="The version the alias points at from now on.")
    reason: str = Field("", max_length=2000)


class RollbackCreate(BaseModel):
    alias: str = Field(PRODUCTION, max_length=32)
    reason: str = Field("", max_length=2000)


def _name_public(reg: DbRegistry, name: str) -> NamePublic:
    versions = reg.versions(name)
    aliases = {a: v.version for v in versions for a in v.aliases}
    return NamePublic(id=name, versions=len(versions), aliases=dict(sorted(aliases.items())),
                      latest=versions[-1].version if versions else None)


def _changed(state: StateDep, principal: Principal, name: str) -> None:
    state.registry_refs.invalidate(principal.tenant_id, name)


@router.get("", response_model=ListPublic, summary="List registry names")
def list_names(reg: RegistryDep) -> ListPublic:
    return ListPublic.of([_name_public(reg, n) for n in reg.names()])


@router.get("/{name}", response_model=NamePublic, summary="A registry name: its aliases and latest version")
def get_name(name: str, reg: RegistryDep) -> NamePublic:
    return _name_public(reg, name)


@router.get("/{name}/versions", response_model=ListPublic, summary="List a name's versions (oldest first)")
def list_versions(name: str, reg: RegistryDep) -> ListPublic:
    return ListPublic.of([VersionPublic.of(v) for v in reg.versions(name)])


@router.get("/{name}/versions/{ref}", response_model=VersionPublic, summary="A version by number or alias")
def get_version(name: str, ref: str, reg: RegistryDep) -> VersionPublic:
    return VersionPublic.of(reg.get(name, ref))


@router.post("/{name}/versions", response_model=VersionPublic, status_code=201,
             summary="Register a fine-tuned model as the next version")
def register_version(name: str, body: VersionCreate, principal: TrainPrincipal, session: SessionDep,
                     state: StateDep, settings: SettingsDep) -> VersionPublic:
    """Copies the fine-tuned model's folder (and its training file, for replay) into the registry as an immutable
    version; with ``alias`` the alias points at it at once."""
    if name in available_base_models(settings):  # `model: NAME` must keep meaning the base model
        raise InvalidRequestError(f"name: '{name}' is a base model's name; choose another name for your model.",
                                  param="name", code="invalid_name")
    models = ModelRepo(session, principal.tenant_id)
    m = fine_tuned(models, state, body.model)  # another tenant's model is a 404
    job = JobRepo(session, principal.tenant_id).find(m.job_id)
    train = FileRepo(session, principal.tenant_id).find(job.training_file_id) if job is not None else None
    train_path = state.storage.local_path(train.storage_key) if train is not None else None
    reg = db_registry(session, principal.tenant_id, state.storage)
    actor = actor_of(principal)
    v = reg.register(name, state.storage.local_path(m.storage_key), actor=actor, reason=body.reason,
                     train_data=train_path if train_path is not None and train_path.is_file() else None,
                     source=m.id)
    if body.alias:
        reg.set_alias(name, body.alias, v.version, actor=actor, reason=body.reason)
        v = reg.get(name, v.version)
    _changed(state, principal, name)
    return VersionPublic.of(v)


@router.put("/{name}/aliases/{alias}", response_model=VersionPublic, summary="Point an alias at a version")
def set_alias(name: str, alias: str, body: AliasUpdate, principal: TrainPrincipal, session: SessionDep,
              state: StateDep) -> VersionPublic:
    """Promote (or demote) a version: the next request for ``name@alias`` is served by it."""
    reg = db_registry(session, principal.tenant_id, state.storage)
    reg.set_alias(name, alias, body.version, actor=actor_of(principal), reason=body.reason)
    _changed(state, principal, name)
    return VersionPublic.of(reg.get(name, body.version))


@router.delete("/{name}/aliases/{alias}", response_model=NamePublic, summary="Remove an alias")
def remove_alias(name: str, alias: str, principal: TrainPrincipal, session: SessionDep, state: StateDep,
                 reason: Annotated[str, Query(max_length=2000)] = "") -> NamePublic:
    reg = db_registry(session, principal.tenant_id, state.storage)
    reg.remove_alias(name, alias, actor=actor_of(principal), reason=reason)
    _changed(state, principal, name)
    return _name_public(reg, name)


@router.post("/{name}/rollback", response_model=VersionPublic, summary="Move an alias back to its previous target")
def rollback(name: str, body: RollbackCreate, principal: TrainPrincipal, session: SessionDep,
             state: StateDep) -> VersionPublic:
    reg = db_registry(session, principal.tenant_id, state.storage)
    v = reg.rollback(name, body.alias, actor=actor_of(principal), reason=body.reason)
    _changed(state, principal, name)
    return VersionPublic.of(v)


@router.delete("/{name}/versions/{version}", response_model=NamePublic, summary="Delete a version")
def delete_version(name: str, version: int, principal: TrainPrincipal, session: SessionDep, state: StateDep,
                   reason: Annotated[str, Query(max_length=2000)] = "") -> NamePublic:
    """Refused (409) while an alias points at it; its number is never given to another version."""
    reg = db_registry(session, principal.tenant_id, state.storage)
    v = reg.get(name, version)
    reg.delete_version(name, version, actor=actor_of(principal), reason=reason)
    _changed(state, principal, name)
    state.inference.unload(cache_key(principal.tenant_id, v), v.run_dir)
    return _name_public(reg, name)


@router.get("/{name}/history", response_model=ListPublic, summary="A name's audit history (oldest first)")
def history(name: str, reg: RegistryDep) -> ListPublic:
    return ListPublic.of([EventPublic(**h) for h in reg.history(name)])
