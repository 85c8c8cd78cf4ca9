"""/v1/models: the base models available for fine-tuning and embeddings, and the tenant's fine-tuned models."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response

from tuneforge.api.deps import CurrentPrincipal, Models, SessionDep, SettingsDep, StateDep, TrainPrincipal
from tuneforge.api.schemas import EvaluationPublic, ListPublic, ModelDeleted, ModelPublic
from tuneforge.errors import InvalidRequestError, PermissionDeniedError
from tuneforge.evaluation.card import base_model_card, read_card
from tuneforge.evaluation.report import read_evaluation
from tuneforge.jobs.service import available_base_models, base_model_info, chat_base_models
from tuneforge.store.artifacts import delete_model

router = APIRouter(prefix="/v1/models", tags=["models"])

BASE_OWNER = "tuneforge"


def _base(name: str, chat: list[str]) -> ModelPublic:
    return ModelPublic(id=name, created=0, owned_by=BASE_OWNER, task="generation" if name in chat else None,
                       **base_model_info(name))


@router.get("", response_model=ListPublic, summary="List models")
def list_models(models: Models, principal: CurrentPrincipal, settings: SettingsDep) -> ListPublic:
    """The base models (chat models with ``task: generation``) and the tenant's fine-tuned models, each with its
    ``parent``: the model it was trained from."""
    own = [ModelPublic.of(m, principal.tenant_name) for m in models.list(limit=10_000).data]
    chat = chat_base_models(settings)
    return ListPublic.of([_base(n, chat) for n in available_base_models(settings)] + own)


@router.get("/{model}", response_model=ModelPublic, summary="Retrieve a model")
def retrieve_model(model: str, models: Models, principal: CurrentPrincipal, settings: SettingsDep,
                   state: StateDep) -> ModelPublic:
    if model in available_base_models(settings):
        return _base(model, chat_base_models(settings))
    m = models.get(model)
    public = ModelPublic.of(m, principal.tenant_name)
    # issue 20: the backend that serves it (chosen by `serve --backend auto` with its measurements), once loaded
    info = getattr(state.inference.backend, "info", None)
    public.backend = info(state.storage.local_path(m.storage_key)) if info is not None else None
    return public


@router.get("/{model}/evaluation", response_model=EvaluationPublic, summary="A fine-tuned model's evaluation")
def evaluation(model: str, models: Models, state: StateDep, settings: SettingsDep) -> EvaluationPublic:
    """The dev evaluation written when the model was trained (per-class table, confusion matrix, entity table,
    or exact match and F1), with its training summary."""
    if model in available_base_models(settings):
        raise InvalidRequestError(f"'{model}' is a base model; only fine-tuned models have an evaluation.",
                                  param="model", code="base_model")
    m = models.get(model)
    folder = state.storage.local_path(m.storage_key)
    models.session.close()
    return EvaluationPublic(model=m.id, **read_evaluation(folder))


@router.get("/{model}/card", summary="A model's card (markdown)", response_class=Response,
            responses={200: {"content": {"text/markdown": {}}, "description": "The model card"}})
def model_card(model: str, models: Models, state: StateDep, settings: SettingsDep) -> Response:
    """The model card in the Hugging Face format (markdown with YAML front matter): a fine-tuned model's
    ``README.md``, written when it was trained (with its evaluations, training data by fingerprint, every
    hyperparameter, privacy and cost), or a short card of a base model."""
    if model in available_base_models(settings):
        text = base_model_card(model)
    else:
        m = models.get(model)
        folder = state.storage.local_path(m.storage_key)
        models.session.close()
        text = read_card(folder)
    return Response(text, media_type="text/markdown; charset=utf-8")


@router.delete("/{model}", response_model=ModelDeleted, summary="Delete a fine-tuned model")
def remove_model(model: str, principal: TrainPrincipal, session: SessionDep, settings: SettingsDep,
                 state: StateDep) -> ModelDeleted:
    if model in available_base_models(settings):
        raise PermissionDeniedError(f"'{model}' is a base model; only your fine-tuned models can be deleted.",
                                    param="model", code="cannot_delete_base_model")
    m = delete_model(session, tenant_id=principal.tenant_id, storage=state.storage, model_id=model)
    state.inference.unload(m.id, state.storage.local_path(m.storage_key))
    return ModelDeleted(id=m.id)


# --- bring your own run (issue 20): a CLI-trained run folder, uploaded as a .tar.gz, becomes the tenant's model ---
@router.post("/import", response_model=ModelPublic, summary="Import a run trained with the CLI")
def import_model(file: Annotated[UploadFile, File(description="A .tar.gz of a finished `tuneforge train` folder.")],
                 name: Annotated[str, Form(description="The model's name (usable as its id).")],
                 principal: TrainPrincipal, session: SessionDep, settings: SettingsDep,
                 state: StateDep) -> ModelPublic:
    """Validated (safetensors only, manifest present, base model known here), copied into the artifact store and
    registered as one of your models: served, metered and isolated like a model trained by a job."""
    from tuneforge.jobs.imports import import_archive
    from tuneforge.store.models import Tenant

    tenant = session.get(Tenant, principal.tenant_id)
    assert tenant is not None
    m = import_archive(session, tenant=tenant, storage_bytes=principal.quotas.storage_bytes, storage=state.storage,
                       settings=settings, stream=file.file, name=name)
    return ModelPublic.of(m, principal.tenant_name)
