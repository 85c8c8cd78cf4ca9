"""/v1/chat/completions and /v1/completions: OpenAI's generation endpoints, served by the chat models' decode loops.

A chat request's messages render through the tokenizer's chat template (:func:`.template.render_prompt`, the one
rendering path training, ``tuneforge predict`` and ``tuneforge chat`` share); a completion's prompt is tokenized as
it is, with no template. Every choice is one generation of the model's :class:`GenerationBatcher`, which decodes
concurrent requests together (continuous batching) with the reply rules of
:mod:`tuneforge.tasks.generation.generate` (end-of-turn ids, stop strings, greedy at temperature 0).

``stream: true`` answers with Server-Sent Events exactly as OpenAI sends them: ``chat.completion.chunk`` objects
(for chat, a first delta with the role, then one per piece of text as the model produces it, then one with the
``finish_reason``), a last chunk with the ``usage`` and no choices when ``stream_options.include_usage`` is set,
and ``data: [DONE]``. A client that goes away stops its generation at the next step.

The routes are ``async``: they wait for the decode loop without holding a worker thread, so many streams cost no
threads; database look-ups, model loads and tokenization run in the thread pool.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from tuneforge.api.chat_schemas import (
    MAX_CHOICES,
    ChatCompletionCreate,
    ChatCompletionPublic,
    CompletionCreate,
    CompletionPublic,
)
from tuneforge.api.deps import (
    Models,
    PredictPrincipal,
    SettingsDep,
    StateDep,
    charge_tokens,
    meter_model,
    refund_tokens,
)
from tuneforge.api.errors import error_body, status_for
from tuneforge.api.model_refs import resolve_model
from tuneforge.api.state import ServiceState
from tuneforge.errors import InvalidRequestError, NotFoundError, TuneforgeError
from tuneforge.inference.generation_batcher import GenerationRequest
from tuneforge.inference.serving import ChatTarget
from tuneforge.jobs.service import available_base_models, chat_base_models, registry_name
from tuneforge.settings import Settings
from tuneforge.store.repositories import ModelRepo
from tuneforge.store.tenants import Principal
from tuneforge.tasks.generation.generate import Generation, GenerationOptions

__all__ = ["chat_base_models", "router"]  # chat_base_models: from jobs.service, for the other routers

router = APIRouter(prefix="/v1", tags=["chat"])

_TOOLS = "tool and function calling is not supported by the models served here; describe the task in the messages"
_LOGPROBS = "log probabilities are not returned by this server"
#: OpenAI fields TuneForge does not implement -> why (a value that asks for nothing, such as ``logprobs: false`` or
#: ``tools: []``, is accepted)
UNSUPPORTED = {
    "tools": _TOOLS, "tool_choice": _TOOLS, "functions": _TOOLS, "function_call": _TOOLS,
    "parallel_tool_calls": _TOOLS,
    "logprobs": _LOGPROBS, "top_logprobs": _LOGPROBS,
    "response_format": "structured outputs (json_object, json_schema) are not supported; only {\"type\": \"text\"}",
    "audio": "audio output is not supported; the models served here read and write text only",
    "modalities": "only the text modality is supported",
    "prediction": "predicted outputs are not supported",
    "logit_bias": "logit_bias is not supported",
    "web_search_options": "web search is not supported",
    "reasoning_effort": "the models served here are not reasoning models",
    "echo": "echo is not supported; the prompt is not repeated in the reply",
    "suffix": "suffix (insertion) is not supported",
    "best_of": "best_of is not supported; use n",
}
#: OpenAI fields that change nothing here and are accepted as they are
IGNORED = {"store", "metadata", "service_tier", "safety_identifier", "prompt_cache_key", "user", "verbosity"}


def _asks_nothing(name: str, value: Any) -> bool:
    if value in (None, False, [], {}, ""):
        return True
    if name == "response_format":
        return isinstance(value, dict) and value.get("type") == "text"
    if name == "modalities":
        return value == ["text"]
    if name == "best_of":
        return value == 1
    return name == "parallel_tool_calls"


def _refuse_unsupported(body: ChatCompletionCreate | CompletionCreate) -> None:
    for name, value in (body.model_extra or {}).items():
        if _asks_nothing(name, value) or name in IGNORED:
            continue
        if name in UNSUPPORTED:
            raise InvalidRequestError(f"{name}: {UNSUPPORTED[name]}.", param=name, code="unsupported_parameter")
        raise InvalidRequestError(f"Unrecognized request argument supplied: {name}", param=name,
                                  code="unknown_parameter")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name):
            raise InvalidRequestError(f"{name}: only 0 is supported; use repetition_penalty (above 1 discourages "
                                      "repeats) instead.", param=name, code="unsupported_value")
    if body.stream_options is not None and not body.stream:
        raise InvalidRequestError("stream_options: only allowed when stream is true.", param="stream_options",
                                  code="invalid_value")


def _text_parts(content: list[dict[str, Any]], where: str) -> str:
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal") and isinstance(part.get(kind), str):
            texts.append(part[kind])
        elif kind in ("image_url", "input_image", "image"):
            raise InvalidRequestError(f"{where}.content[{j}]: image inputs are not supported; the models served "
                                      "here read text only.", param=f"{where}.content", code="unsupported_content")
        elif kind in ("input_audio", "audio"):
            raise InvalidRequestError(f"{where}.content[{j}]: audio inputs are not supported; the models served "
                                      "here read text only.", param=f"{where}.content", code="unsupported_content")
        else:
            raise InvalidRequestError(f"{where}.content[{j}]: a content part of type {kind!r} is not supported "
                                      "(only text parts).", param=f"{where}.content", code="unsupported_content")
    return "\n".join(texts)


def _messages(body: ChatCompletionCreate) -> list[dict[str, str]]:
    """The conversation as the chat template takes it: roles system / user / assistant, text content."""
    out = []
    for i, m in enumerate(body.messages):
        where = f"messages[{i}]"
        extra = m.model_extra or {}
        if m.role in ("tool", "function") or extra.get("tool_calls") or extra.get("function_call"):
            raise InvalidRequestError(f"{where}: {_TOOLS}.", param=where, code="unsupported_parameter")
        if extra.get("audio"):
            raise InvalidRequestError(f"{where}.audio: audio is not supported.", param=where,
                                      code="unsupported_content")
        role = "system" if m.role == "developer" else m.role
        if role not in ("system", "user", "assistant"):
            raise InvalidRequestError(f"{where}.role: '{m.role}' is not a role (system, developer, user or "
                                      "assistant).", param=f"{where}.role", code="invalid_value")
        if m.content is None:
            if role != "assistant":
                raise InvalidRequestError(f"{where}.content: required for a {m.role} message.",
                                          param=f"{where}.content", code="invalid_value")
            text = ""
        elif isinstance(m.content, str):
            text = m.content
        else:
            text = _text_parts(m.content, where)
        out.append({"role": role, "content": text})
    return out


# --- which model -------------------------------------------------------------------------------------------

def _generative(task: str) -> bool:
    from tuneforge.tasks import get_task, task_names

    return task in task_names() and bool(get_task(task).generative)


def _no_model(name: str) -> NotFoundError:
    return NotFoundError(f"The model '{name}' does not exist or you do not have access to it.", param="model",
                         code="model_not_found")


def _not_chat(name: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"model: '{name}' is {what}, not a chat model, so it cannot generate text; chat models here: your fine-tuned "
        "generation models and the base chat models of GET /v1/models. Classify, tag or answer with it through "
        "POST /v1/predict.", param="model", code="model_not_supported")


def _resolve(state: ServiceState, settings: Settings, models: ModelRepo, name: str) -> tuple[str, ChatTarget]:
    """The model id to report and the target to generate with; 404 for an unknown model or another tenant's."""
    try:  # a fine-tuned model's id or a registry name@ref (issue 23), else a base model's name
        m = resolve_model(models, state, name)
    except NotFoundError as e:
        raise e if e.code == "model_not_found" else _no_model(name) from None
    finally:
        models.session.close()  # hold no database connection while the model loads or generates
    if m is not None:
        model_id, task, folder = m.model_id, m.task, m.path
        if not _generative(task):
            raise _not_chat(model_id, f"a {task} model")
        return model_id, state.inference.chat_run(folder, cache_dir=settings.cache_dir)
    base = name if name in settings.base_models else registry_name(name)
    if base is None or base not in available_base_models(settings):
        raise _no_model(name)
    if base not in chat_base_models(settings):
        raise _not_chat(base, "an encoder (a base model for classification, NER, QA and embeddings)")
    if base in settings.base_models:
        return base, state.inference.chat_base(Path(settings.base_models[base]))
    from tuneforge.models.registry import resolve_base_model

    return base, state.inference.chat_base(resolve_base_model(base, settings.cache_dir).path)


# --- generating --------------------------------------------------------------------------------------------

@dataclass
class _Plan:
    """What one request generates: its prompts' ids, the options of each choice, the reply length."""

    prompts: list[list[int]]
    options: list[GenerationOptions]  # one per choice of a prompt (n)
    max_new: int

    @property
    def choices(self) -> int:
        return len(self.prompts) * len(self.options)

    @property
    def most_tokens(self) -> int:
        """The tokens it may take (OpenAI's estimate for rate limits): its prompts and every choice's reply."""
        return sum(len(p) for p in self.prompts) + self.choices * self.max_new


def _plan(body: ChatCompletionCreate | CompletionCreate, target: ChatTarget, prompts: list[list[int]],
          settings: Settings, requested: int | None, param: str) -> _Plan:
    cap = settings.chat_max_tokens
    if requested is not None and requested > cap:
        raise InvalidRequestError(f"{param}: {requested:,} is more than this server's limit of {cap:,} tokens per "
                                  "reply.", param=param, code="invalid_value")
    context = target.context_length
    for p in prompts:
        if not p:
            raise InvalidRequestError("The prompt is empty: there is nothing to continue.", param="prompt",
                                      code="invalid_value")
        if context is None:
            continue
        asked = len(p) + (requested or 1)
        if asked > context:
            reply = f"{requested:,} in the completion" if requested else "at least 1 for the completion"
            where = "messages" if isinstance(body, ChatCompletionCreate) else "prompt"
            # the code leads the message too (as the task's own budget errors say it): clients that show only the
            # message (openai >= 3.x puts no error body in the exception text) still name the error
            raise InvalidRequestError(
                f"context_length_exceeded: This model's maximum context length is {context:,} tokens. However, you "
                f"requested {asked:,} tokens ({len(p):,} in the {where}, {reply}). Please reduce the length of the "
                f"{where} or completion.",
                param=where, code="context_length_exceeded")
    longest = max(len(p) for p in prompts)
    max_new = requested or (cap if context is None else min(cap, context - longest))
    n = body.n or 1
    if n * len(prompts) > MAX_CHOICES:
        raise InvalidRequestError(f"n: {n} choices for {len(prompts)} prompts make {n * len(prompts)} generations; "
                                  f"at most {MAX_CHOICES} per request.", param="n", code="invalid_value")
    stop = body.stop if body.stop is None or isinstance(body.stop, str) else tuple(body.stop)
    options = [GenerationOptions.of(
        max_new_tokens=max_new, temperature=1.0 if body.temperature is None else body.temperature,
        top_p=body.top_p, top_k=body.top_k, repetition_penalty=body.repetition_penalty,
        seed=None if body.seed is None else body.seed + j, stop=stop) for j in range(n)]
    return _Plan(prompts, options, max_new)


def _finish_reason(g: Generation) -> str:
    return "length" if g.finish_reason == "length" else "stop"


def _metering(state: ServiceState, principal: Principal, model_id: str, *, bill_prompt: bool, max_new: int
              ) -> Callable[[Generation], None]:
    """Counts what a generation used in the usage ledger when it ends, however it ends (a closed stream too), and
    gives back to the tokens-per-minute limit the reply tokens it was charged for but did not use."""

    def done(g: Generation) -> None:
        if bill_prompt:
            state.meter.add(principal.tenant_id, "prompt_tokens", g.prompt_tokens, model=model_id)
        state.meter.add(principal.tenant_id, "completion_tokens", g.completion_tokens, model=model_id)
        refund_tokens(state, principal, max_new - g.completion_tokens)

    return done


def _submit(plan: _Plan, target: ChatTarget, state: ServiceState, principal: Principal, model_id: str, *,
            strip: bool, stream: bool) -> list[GenerationRequest]:
    loop = asyncio.get_running_loop()
    requests: list[GenerationRequest] = []
    try:
        for prompt in plan.prompts:
            for j, opts in enumerate(plan.options):
                done = _metering(state, principal, model_id, bill_prompt=j == 0, max_new=plan.max_new)
                requests.append(target.submit(prompt, opts, strip=strip, stream=stream, loop=loop, on_done=done))
    except BaseException:
        for r in requests:
            r.cancel()
        refund_tokens(state, principal, plan.max_new * (plan.choices - len(requests)))
        raise
    return requests


def _usage(gens: list[Generation], n: int) -> dict[str, int]:
    prompt = sum(g.prompt_tokens for i, g in enumerate(gens) if i % n == 0)  # a prompt counts once, not per choice
    completion = sum(g.completion_tokens for g in gens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _results(requests: list[GenerationRequest]) -> list[Generation]:
    try:
        return list(await asyncio.gather(*(r.aresult() for r in requests)))
    finally:
        for r in requests:
            r.cancel()


async def _merged(requests: list[GenerationRequest]) -> AsyncIterator[tuple[int, str | None, Generation | None]]:
    """``(choice, delta, None)`` as each choice's text grows and ``(choice, None, generation)`` when it ends."""
    if len(requests) == 1:
        [r] = requests
        async for text in r:
            yield 0, text, None
        yield 0, None, r.generation
        return
    q: asyncio.Queue[tuple[int, str | None, Generation | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, r: GenerationRequest) -> None:
        try:
            async for delta in r:
                await q.put((i, delta, None))
            await q.put((i, None, r.generation))
        except BaseException as e:  # noqa: BLE001 - handed to the reader
            await q.put((i, None, e))

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(requests)]
    try:
        left = len(requests)
        while left:
            i, delta, end = await q.get()
            if isinstance(end, BaseException):
                raise end
            if delta is None:
                left -= 1
            yield i, delta, end
    finally:
        for t in tasks:
            t.cancel()


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _stream(requests: list[GenerationRequest], *, chat: bool, completion_id: str, model_id: str, n: int,
            include_usage: bool) -> StreamingResponse:
    created = int(time.time())
    obj = "chat.completion.chunk" if chat else "text_completion"

    def chunk(choices: list[dict[str, Any]], **more: Any) -> str:
        body: dict[str, Any] = {"id": completion_id, "object": obj, "created": created, "model": model_id,
                                "system_fingerprint": None, "choices": choices}
        if include_usage:
            body["usage"] = None
        body.update(more)
        return _sse(body)

    def choice(i: int, text: str | None, finish: str | None, role: bool = False) -> dict[str, Any]:
        if not chat:
            return {"index": i, "text": text or "", "logprobs": None, "finish_reason": finish}
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        return {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}

    async def events() -> AsyncIterator[str]:
        gens: list[Generation | None] = [None] * len(requests)
        try:
            if chat:
                for i in range(len(requests)):
                    yield chunk([choice(i, "", None, role=True)])
            async for i, delta, end in _merged(requests):
                if end is None:
                    yield chunk([choice(i, delta, None)])
                else:
                    gens[i] = end
                    yield chunk([choice(i, None if chat else "", _finish_reason(end))])
            if include_usage:
                yield chunk([], usage=_usage([g for g in gens if g is not None], n))
            yield "data: [DONE]\n\n"
        except TuneforgeError as e:  # the status line is sent: the error goes in the stream, as OpenAI does
            _, kind = status_for(e)
            code = getattr(e, "code", None)
            yield _sse(error_body(str(e), kind, param=getattr(e, "param", None), code=code))
        finally:
            for r in requests:  # a client that went away stops its generation at the next step
                r.cancel()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


async def _serve(request: Request, body: ChatCompletionCreate | CompletionCreate, principal: Principal,
                 models: ModelRepo, state: ServiceState, settings: Settings) -> Any:
    chat = isinstance(body, ChatCompletionCreate)
    _refuse_unsupported(body)
    messages = _messages(body) if isinstance(body, ChatCompletionCreate) else None
    model_id, target = await run_in_threadpool(_resolve, state, settings, models, body.model)
    meter_model(request, model_id)
    if isinstance(body, ChatCompletionCreate):
        assert messages is not None
        prompts = [await run_in_threadpool(target.render, messages)]
        requested = body.max_completion_tokens or body.max_tokens
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    else:
        prompts = await run_in_threadpool(_completion_prompts, body.prompt, target)
        requested, param = body.max_tokens, "max_tokens"
    plan = _plan(body, target, prompts, settings, requested, param)  # a bad option (stop ...) is a 400
    charge_tokens(request, state, principal, plan.most_tokens)
    n = len(plan.options)
    requests = _submit(plan, target, state, principal, model_id, strip=chat, stream=bool(body.stream))
    completion_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:29]
    if body.stream:
        include = bool(body.stream_options and body.stream_options.include_usage)
        return _stream(requests, chat=chat, completion_id=completion_id, model_id=model_id, n=n,
                       include_usage=include)
    gens = await _results(requests)
    created = int(time.time())
    usage = _usage(gens, n)
    if chat:
        return ChatCompletionPublic(id=completion_id, created=created, model=model_id, usage=usage, choices=[
            {"index": i, "message": {"role": "assistant", "content": g.text}, "finish_reason": _finish_reason(g)}
            for i, g in enumerate(gens)])
    return CompletionPublic(id=completion_id, created=created, model=model_id, usage=usage, choices=[
        {"index": i, "text": g.text, "finish_reason": _finish_reason(g)} for i, g in enumerate(gens)])


def _completion_prompts(prompt: str | list[str] | list[int] | list[list[int]], target: ChatTarget) -> list[list[int]]:
    if isinstance(prompt, str):
        return [target.encode(prompt)]
    if not prompt:
        raise InvalidRequestError("prompt: an empty list.", param="prompt", code="invalid_value")
    if all(isinstance(p, str) for p in prompt):
        return [target.encode(str(p)) for p in prompt]
    lists: list[Any] = [prompt] if all(isinstance(p, int) for p in prompt) else list(prompt)
    vocab = target.vocab_size
    out: list[list[int]] = []
    for ids in lists:
        bad = [t for t in ids if not isinstance(t, int) or not 0 <= t < vocab]
        if bad:
            raise InvalidRequestError(f"prompt: token id {bad[0]} is not in the model's vocabulary (0 to "
                                      f"{vocab - 1}).", param="prompt", code="invalid_value")
        out.append(list(ids))
    return out


_STREAM_DOC: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {
    "description": "With `stream: true`: `data: {chunk}` events, then `data: [DONE]`."}}}}


@router.post("/chat/completions", response_model=ChatCompletionPublic, responses=_STREAM_DOC,
             summary="Create a chat completion")
async def chat_completions(request: Request, body: ChatCompletionCreate, principal: PredictPrincipal,
                           models: Models, state: StateDep, settings: SettingsDep) -> Any:
    """OpenAI's chat completions with a base chat model (`smollm2`) or a fine-tuned generation model; streamed with
    `stream: true`."""
    return await _serve(request, body, principal, models, state, settings)


@router.post("/completions", response_model=CompletionPublic, responses=_STREAM_DOC,
             summary="Create a completion")
async def completions(request: Request, body: CompletionCreate, principal: PredictPrincipal, models: Models,
                      state: StateDep, settings: SettingsDep) -> Any:
    """OpenAI's (legacy) completions: the prompt continued as it is, with no chat template."""
    return await _serve(request, body, principal, models, state, settings)
