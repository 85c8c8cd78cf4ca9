"""/v1/predict and /v1/embeddings: served from the model cache through the micro-batcher.

The routes are plain ``def`` on purpose: FastAPI runs them in its thread pool, so tokenizing and the forward
pass never hold the event loop that answers other requests (and ``/healthz``). The request body is capped by
:class:`~tuneforge.api.middleware.BodyLimits`; here the number of inputs and the characters of each are.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from tuneforge.api.deps import Models, PredictPrincipal, SettingsDep, StateDep, meter_model
from tuneforge.api.model_refs import fine_tuned, resolve_model, servable_model  # noqa: F401  (fine_tuned: chat, monitor)
from tuneforge.api.routers.drift import InputLog
from tuneforge.api.schemas import EmbeddingCreate, EmbeddingsPublic, PredictCreate, PredictPublic, Usage
from tuneforge.api.state import ServiceState
from tuneforge.errors import ConfigError, InvalidRequestError
from tuneforge.jobs.service import available_base_models, chat_base_models, registry_name

router = APIRouter(prefix="/v1", tags=["inference"])


def _check_count(n: int, limit: int, param: str) -> None:
    if n > limit:
        raise InvalidRequestError(f"{param}: at most {limit} inputs per request, got {n}; split them.", param=param,
                                  code="too_many_inputs")


def _chars(value: Any) -> int:
    """Characters of the texts in one input (a string, or the strings and string lists of an object)."""
    total, stack = 0, [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return total


def _check_lengths(inputs: list[Any], limit: int, param: str) -> None:
    for i, x in enumerate(inputs):
        n = _chars(x)
        if n > limit:
            raise InvalidRequestError(f"{param}[{i}]: {n:,} characters, more than the limit of {limit:,} per input; "
                                      "shorten it or split it into several inputs.", param=param,
                                      code="input_too_long")


@router.post("/predict", response_model=PredictPublic, summary="Predict with a fine-tuned model")
def predict(request: Request, body: PredictCreate, principal: PredictPrincipal, models: Models, state: StateDep,
            settings: SettingsDep, input_log: InputLog) -> PredictPublic:
    _check_count(len(body.inputs), settings.max_predict_inputs, "inputs")
    _check_lengths(body.inputs, settings.max_input_chars, "inputs")
    _check_explain(body)
    m = servable_model(models, state, body.model)  # a fine-tuned model id or a registry name@ref
    path, model_id, task = m.path, m.model_id, m.task
    meter_model(request, model_id)
    models.session.close()  # hold no database connection during the forward pass
    preds, tokens = state.inference.predict(m.cache_key, path, body.inputs)
    data = [{"index": i, **p} for i, p in enumerate(preds)]
    if body.explain:
        for row, explanation in zip(data, _explanations(state, m.cache_key, path, body), strict=True):
            row["explanation"] = explanation
    state.meter.add(principal.tenant_id, "predicted_tokens", tokens, model=model_id)
    input_log(m, body.inputs, preds)  # monitoring: a sample logged after the response (issue 23)
    return PredictPublic(model=model_id, task=task, data=data, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


#: inputs explained per request: each explanation costs ~``DEFAULT_STEPS`` forward and backward passes
MAX_EXPLAIN_INPUTS = 8


def _check_explain(body: PredictCreate) -> None:
    if body.explain_label is not None and not body.explain:
        raise InvalidRequestError("explain_label: it names the label to explain; add \"explain\": true",
                                  param="explain_label", code="invalid_value")
    if body.explain and len(body.inputs) > MAX_EXPLAIN_INPUTS:
        raise InvalidRequestError(f"inputs: at most {MAX_EXPLAIN_INPUTS} inputs per request with explain, got "
                                  f"{len(body.inputs)}; split them, or leave explain out.", param="inputs",
                                  code="too_many_inputs")


def _explanations(state: ServiceState, model_id: str, path: Path, body: PredictCreate) -> list[Any]:
    """Each input's explanation (:mod:`tuneforge.evaluation.explain`), from a copy of the model kept beside the
    served one in the model cache (the attribution hooks the embedding layer, which the served copy's concurrent
    forward passes must not run through): an object for a classifier, a list (one per entity) for NER."""
    from tuneforge.evaluation.explain import Explainer
    from tuneforge.inference import load_predictor

    explainer = state.inference.cache.get_entry(f"explain:{model_id}", lambda: Explainer(load_predictor(path)))
    assert isinstance(explainer, Explainer)
    results = explainer.explain(body.inputs, label=body.explain_label)
    return [[e.to_json() for e in r] if isinstance(r, list) else r.to_json() for r in results]


def _encoder(name: str, settings: SettingsDep) -> tuple[str, Path]:
    from tuneforge.models.registry import resolve_base_model

    name = registry_name(name) or name  # aliases such as all-MiniLM-L6-v2
    if name not in available_base_models(settings):
        raise InvalidRequestError(f"model: '{name}' is not an embedding model here (available: "
                                  f"{', '.join(available_base_models(settings))}).", param="model",
                                  code="model_not_found")
    if name in chat_base_models(settings):  # refused as its fine-tuned chat runs are
        raise ConfigError(f"model: embeddings come from encoder models; '{name}' is a chat model",
                          hint="use an encoder such as minilm; chat with it at /v1/chat/completions")
    if name in settings.base_models:
        return name, Path(settings.base_models[name])
    return name, resolve_base_model(name, settings.cache_dir).path


@router.post("/embeddings", response_model=EmbeddingsPublic,
             summary="Embed texts with a base encoder or a fine-tuned model")
def embeddings(request: Request, body: EmbeddingCreate, principal: PredictPrincipal, models: Models,
               state: StateDep, settings: SettingsDep) -> EmbeddingsPublic:
    """``model`` is a base encoder (``tiny-bert``, ``all-MiniLM-L6-v2`` ...) or one of this tenant's fine-tuned
    models (``ft:...``, any encoder task): the mean-pooled, L2-normalised last hidden states of its encoder."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequestError("input: a string or a list of strings (token arrays are not supported)",
                                  param="input", code="invalid_input")
    _check_count(len(texts), settings.max_predict_inputs, "input")
    _check_lengths(texts, settings.max_input_chars, "input")
    m = resolve_model(models, state, body.model)  # another tenant's model is a 404, like a missing one
    if m is not None:
        name, key, path = m.model_id, m.cache_key, m.path
    else:
        name, path = _encoder(body.model, settings)
        key = name
    meter_model(request, name)
    models.session.close()  # hold no database connection during the forward pass
    vectors, tokens = state.inference.embed(key, path, texts)
    if body.dimensions is not None and body.dimensions != len(vectors[0]):
        raise InvalidRequestError(f"dimensions: {body.model} gives {len(vectors[0])}-dimensional vectors; it cannot "
                                  f"give {body.dimensions}.", param="dimensions", code="invalid_value")
    state.meter.add(principal.tenant_id, "embedded_tokens", tokens, model=name)
    data = []
    for i, v in enumerate(vectors):
        vec = np.asarray(v, dtype="<f4")
        emb: object = base64.b64encode(vec.tobytes()).decode() if body.encoding_format == "base64" else vec.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return EmbeddingsPublic(data=data, model=body.model, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))
