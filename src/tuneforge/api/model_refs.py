"""The one place the inference routes (``/v1/predict``, ``/v1/embeddings``, chat and completions) turn a request's
``model`` into the folder to serve.

``model`` is a fine-tuned model's id (``ft:...``, or a kept checkpoint ``ft:...:ckpt-step-N``), or a name in the
tenant's registry: ``sst@production``, ``sst@3``, or plain ``sst``, which means ``sst@production``. The alias is
looked up on every request (through :class:`~tuneforge.store.registry.cache.RefCache`, which the registry routes
clear on every change), so a promotion or rollback takes effect with the next request and no restart. Each version
is its own entry in the model cache (``<tenant>:<name>@<version>``): requests already running on the old version
finish on it, new ones load or find the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuneforge import runs
from tuneforge.api.state import ServiceState
from tuneforge.errors import NotFoundError, RunError
from tuneforge.jobs.runner import KEPT_CHECKPOINTS
from tuneforge.store.models import Model
from tuneforge.store.registry import ModelVersion, as_registry_ref, db_registry
from tuneforge.store.repositories import ModelRepo

__all__ = ["Servable", "cache_key", "fine_tuned", "resolve_model", "servable_model"]


@dataclass(frozen=True)
class Servable:
    """A model to run a request with."""

    #: the id responses report and usage is counted by: the fine-tuned model's id, or ``name@version``
    model_id: str
    #: the model cache's key: one per version, so moving an alias never changes what a loaded entry holds
    cache_key: str
    task: str
    path: Path
    #: the registry version, when ``model`` named one
    version: ModelVersion | None = None


def cache_key(tenant_id: str, v: ModelVersion) -> str:
    return f"{tenant_id}:{v.ref}"


def _from_registry(models: ModelRepo, state: ServiceState, name: str, ref: str | None) -> Servable | None:
    reg = db_registry(models.session, models.tenant_id, state.storage)
    if ref is None and not reg.exists(name):
        return None  # not a registry name: a fine-tuned model's id or a base model's name
    v = reg.get(name, ref)
    try:
        task = str(runs.read_manifest(v.run_dir, require_weights=False).get("task") or "")
    except RunError:
        raise NotFoundError(f"model: the files of {v.ref} are missing from storage.", param="model",
                            code="model_not_found") from None
    return Servable(model_id=v.ref, cache_key=cache_key(models.tenant_id, v), task=task, path=v.run_dir, version=v)


def fine_tuned(models: ModelRepo, state: ServiceState, model_id: str) -> Model:
    """One of the tenant's fine-tuned models, or a kept checkpoint of one (``<model>:ckpt-step-N``); another
    tenant's, or a checkpoint that was not kept, is a 404."""
    m = models.servable(model_id)
    if not state.storage.exists(m.storage_key):
        raise NotFoundError(f"model: '{m.id}' is a checkpoint that was not kept as a model (the last "
                            f"{KEPT_CHECKPOINTS} checkpoints of a succeeded job are); use the job's fine-tuned model "
                            "or a later checkpoint.", param="model", code="model_not_found")
    return m


def _fine_tuned(models: ModelRepo, state: ServiceState, model_id: str) -> Servable:
    m = fine_tuned(models, state, model_id)
    return Servable(model_id=m.id, cache_key=m.id, task=m.task, path=state.storage.local_path(m.storage_key))


def resolve_model(models: ModelRepo, state: ServiceState, model: str) -> Servable | None:
    """What ``model`` names among the tenant's registry and fine-tuned models; None when it names neither (a base
    model's name, which embeddings and chat serve themselves). ``name@ref`` that the registry does not know, an
    ``ft:`` id that is not the tenant's, or another tenant's name is :class:`NotFoundError` (404)."""
    ref = as_registry_ref(model)
    if ref is not None:
        name, alias = ref
        found = state.registry_refs.get(models.tenant_id, name, alias or "",
                                        lambda: _from_registry(models, state, name, alias))
        if found is not None:
            return found
    if model.startswith("ft:") or models.find(model) is not None:
        return _fine_tuned(models, state, model)
    return None


def servable_model(models: ModelRepo, state: ServiceState, model: str) -> Servable:
    """:func:`resolve_model` for routes that serve only the tenant's own models (``/v1/predict``)."""
    found = resolve_model(models, state, model)
    if found is None:
        raise NotFoundError(f"No such model: '{model}'", param="model")
    return found
