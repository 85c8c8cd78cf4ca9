"""/v1/models: the base models available for fine-tuning and embeddings, and the tenant's fine-tuned models."""

from __future__ import annotations

from fastapi import APIRouter

from tuneforge.api.deps import CurrentPrincipal, Models, SessionDep, SettingsDep, StateDep, TrainPrincipal
from tuneforge.api.schemas import ListPublic, ModelDeleted, ModelPublic
from tuneforge.errors import PermissionDeniedError
from tuneforge.jobs.service import available_base_models
from tuneforge.store.artifacts import delete_model

router = APIRouter(prefix="/v1/models", tags=["models"])

BASE_OWNER = "tuneforge"


def _base(name: str) -> ModelPublic:
    return ModelPublic(id=name, created=0, owned_by=BASE_OWNER)


@router.get("", response_model=ListPublic, summary="List models")
def list_models(models: Models, principal: CurrentPrincipal, settings: SettingsDep) -> ListPublic:
    own = [ModelPublic.of(m, principal.tenant_name) for m in models.list(limit=10_000).data]
    return ListPublic.of([_base(n) for n in available_base_models(settings)] + own)


@router.get("/{model}", response_model=ModelPublic, summary="Retrieve a model")
def retrieve_model(model: str, models: Models, principal: CurrentPrincipal, settings: SettingsDep) -> ModelPublic:
    if model in available_base_models(settings):
        return _base(model)
    return ModelPublic.of(models.get(model), principal.tenant_name)


@router.delete("/{model}", response_model=ModelDeleted, summary="Delete a fine-tuned model")
def remove_model(model: str, principal: TrainPrincipal, session: SessionDep, settings: SettingsDep,
                 state: StateDep) -> ModelDeleted:
    if model in available_base_models(settings):
        raise PermissionDeniedError(f"'{model}' is a base model; only your fine-tuned models can be deleted.",
                                    param="model", code="cannot_delete_base_model")
    m = delete_model(session, tenant_id=principal.tenant_id, storage=state.storage, model_id=model)
    state.inference.unload(m.id)
    return ModelDeleted(id=m.id)
