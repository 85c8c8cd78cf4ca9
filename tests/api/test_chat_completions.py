"""/v1/chat/completions and /v1/completions on tiny in-process chat models (tests/conftest.py's
``tiny_chat_model`` as the base ``tiny-chat``, and a LoRA run trained on it by ``tuneforge train``): the served
prompt ids are ``render_prompt``'s and the greedy reply is ``tuneforge predict``'s; streams (raw SSE and the
official ``openai`` client) add up to the non-streamed reply; a client that goes away stops its generation;
OpenAI's error envelope for unsupported fields, unknown or other tenants' models, encoders and over-long
prompts; LoRA runs share one base; /v1/models lists parents; tokens are metered."""

from __future__ import annotations

import json
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.conftest import write_jsonl
from tests.service_support import install_model, make_settings, new_tenant, serve
from tuneforge.api import create_app
from tuneforge.inference.serving import ChatTarget
from tuneforge.tasks.generation.template import render_prompt

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def settings(db_url, tmp_path, tiny_bert, tiny_chat_model):
    return make_settings(tmp_path / "data", db_url, base_models={"tiny-bert": tiny_bert,
                                                                "tiny-chat": tiny_chat_model},
                         chat_max_tokens=200)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Path:
    """A LoRA generation run of the tiny model, trained by ``tuneforge train``."""
    from tuneforge.cli import main

    folder = tmp_path_factory.mktemp("chat-run")
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in [("Say hello.", "Hello there!"), ("Where is the Eiffel Tower?", "It is in Paris.")] * 6]
    data = write_jsonl(folder / "chat.jsonl", rows)
    run = folder / "run"
    assert main(["train", "--data", str(data), "--base-model", str(tiny_chat_model), "--output", str(run),
                 "--epochs", "2", "--batch-size", "4", "--lr", "3e-2", "--precision", "fp32"]) == 0
    return run


def install_chat_run(app: Any, key: str, run: Path, suffix: str = "chat") -> str:
    """``run`` as one of the fine-tuned generation models of the tenant behind ``key``; returns its id."""
    from tuneforge.store.db import utcnow
    from tuneforge.store.models import Model
    from tuneforge.store.tenants import authenticate

    state = app.state.tuneforge
    with state.sessions() as s:
        p = authenticate(s, key)
        model_id = f"ft:tiny-chat:{p.tenant_name}:{suffix}:{secrets.token_hex(4)}"
        storage_key = f"models/{p.tenant_id}/{suffix}-{secrets.token_hex(4)}"
        s.add(Model(id=model_id, tenant_id=p.tenant_id, job_id="ftjob-x", base_model="tiny-chat", task="generation",
                    storage_key=storage_key, bytes=1, created_at=utcnow()))
        s.commit()
    shutil.copytree(run, state.storage.local_path(storage_key))
    return model_id


def chat(client: Any, model: str, messages: list[dict[str, Any]] = HELLO, **kw: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": messages, **kw})


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return dict(body["error"])


def sse_events(text: str) -> list[Any]:
    """The data of each Server-Sent Event, checking the framing: ``data: ...`` lines separated by blank lines."""
    assert text.endswith("\n\n")
    events = text[:-2].split("\n\n")
    assert all(e.startswith("data: ") and "\n" not in e for e in events), text
    return [e[len("data: "):] if e == "data: [DONE]" else json.loads(e[len("data: "):]) for e in events]


# --- the same path as tuneforge predict -------------------------------------------------------------------------


def test_greedy_reply_is_tuneforge_predicts_from_render_prompts_ids(api, lora_run, tmp_path, capsys, monkeypatch):
    from tuneforge.cli import main
    from tuneforge.inference import load_predictor

    key = api.tenant()[1]
    model_id = install_chat_run(api.app, key, lora_run)
    seen: list[list[int]] = []
    real_submit = ChatTarget.submit

    def spy(self: ChatTarget, prompt_ids: Any, *a: Any, **kw: Any) -> Any:
        seen.append(list(prompt_ids))
        return real_submit(self, prompt_ids, *a, **kw)

    monkeypatch.setattr(ChatTarget, "submit", spy)
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is it?"}]
    r = chat(api.as_(key), model_id, conversation, max_tokens=12, temperature=0)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion" and body["model"] == model_id
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length")

    tok = load_predictor(lora_run).tokenizer
    assert seen == [render_prompt(tok, conversation)]
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"messages": conversation}])
    capsys.readouterr()
    assert main(["predict", str(lora_run), "--data", str(data), "-o", str(tmp_path / "out.jsonl"),
                 "--max-new-tokens", "12"]) == 0
    [predicted] = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert choice["message"]["content"] == predicted["text"] and choice["finish_reason"] == predicted["finish_reason"]
    assert body["usage"] == {"prompt_tokens": predicted["prompt_tokens"],
                             "completion_tokens": predicted["completion_tokens"],
                             "total_tokens": predicted["prompt_tokens"] + predicted["completion_tokens"]}
    assert body["usage"]["prompt_tokens"] == len(seen[0])


def test_completions_continue_the_plain_prompt_without_a_template(api, tiny_chat_model, monkeypatch):
    from transformers import AutoTokenizer

    seen: list[list[int]] = []
    real_submit = ChatTarget.submit
    monkeypatch.setattr(ChatTarget, "submit", lambda self, ids, *a, **kw: seen.append(list(ids)) or real_submit(
        self, ids, *a, **kw))
    c = api.as_(api.tenant()[1])
    r = c.post("/v1/completions", json={"model": "tiny-chat", "prompt": ["Once upon a time", "The capital is"],
                                        "max_tokens": 6, "temperature": 0, "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion" and body["model"] == "tiny-chat"
    tok = AutoTokenizer.from_pretrained(str(tiny_chat_model))
    plain = [tok("Once upon a time")["input_ids"], tok("The capital is")["input_ids"]]
    assert seen == [plain[0], plain[0], plain[1], plain[1]]  # n choices of each prompt, in OpenAI's order
    texts = [ch["text"] for ch in body["choices"]]
    assert [ch["index"] for ch in body["choices"]] == [0, 1, 2, 3] and texts[0] == texts[1] and texts[2] == texts[3]
    assert body["usage"]["prompt_tokens"] == len(plain[0]) + len(plain[1])  # a prompt counts once, not per choice
    assert 4 <= body["usage"]["completion_tokens"] <= 24
    r = c.post("/v1/completions", json={"model": "tiny-chat", "prompt": plain[0], "max_tokens": 6,
                                        "temperature": 0})
    assert r.json()["choices"][0]["text"] == texts[0]  # token ids as the prompt: the same continuation


# --- streaming --------------------------------------------------------------------------------------------------


def test_the_stream_is_openais_server_sent_events(api):
    c = api.as_(api.tenant()[1])
    plain = chat(c, "tiny-chat", max_tokens=20, temperature=0).json()
    with api.client.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {c.key}"},
                           json={"model": "tiny-chat", "messages": HELLO, "max_tokens": 20, "temperature": 0,
                                 "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(ch["object"] == "chat.completion.chunk" and ch["id"] == chunks[0]["id"] for ch in chunks)
    assert chunks[0]["id"].startswith("chatcmpl-") and chunks[0]["model"] == "tiny-chat"
    assert chunks[0]["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                     "finish_reason": None}]
    content = chunks[1:-2]
    assert len(content) > 1 and all(ch["choices"][0]["finish_reason"] is None and ch["usage"] is None
                                    for ch in content)
    assert "".join(ch["choices"][0]["delta"]["content"] for ch in content) == plain["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "logprobs": None,
                                      "finish_reason": plain["choices"][0]["finish_reason"]}]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]


def test_a_completion_stream_without_usage(api):
    c = api.as_(api.tenant()[1])
    plain = c.post("/v1/completions", json={"model": "tiny-chat", "prompt": "Once upon", "max_tokens": 8,
                                            "temperature": 0}).json()
    with api.client.stream("POST", "/v1/completions", headers={"Authorization": f"Bearer {c.key}"},
                           json={"model": "tiny-chat", "prompt": "Once upon", "max_tokens": 8, "temperature": 0,
                                 "stream": True}) as r:
        events = sse_events("".join(r.iter_text()))
    assert events[-1] == "[DONE]" and all("usage" not in ch for ch in events[:-1])
    assert all(ch["object"] == "text_completion" for ch in events[:-1])
    assert "".join(ch["choices"][0]["text"] for ch in events[:-1]) == plain["choices"][0]["text"]
    assert events[-2]["choices"][0]["finish_reason"] == "length"


@pytest.fixture
def served(settings):
    app = create_app(settings)
    with serve(app) as url:
        yield url, app


def test_the_openai_client_streams_what_it_gets_whole_and_batches_concurrent_streams(served, lora_run):
    url, app = served
    _, ka = new_tenant(app.state.tuneforge.sessions)
    _, kb = new_tenant(app.state.tuneforge.sessions)
    model_id = install_chat_run(app, ka, lora_run)
    a = OpenAI(base_url=f"{url}/v1", api_key=ka, max_retries=0)
    msgs = [{"role": "user", "content": "Where is the Eiffel Tower?"}]
    r = a.chat.completions.create(model=model_id, messages=msgs, max_tokens=16, temperature=0)
    text = r.choices[0].message.content
    assert text and r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0

    def streamed() -> tuple[str, Any]:
        parts, usage = [], None
        for ch in a.chat.completions.create(model=model_id, messages=msgs, max_tokens=16, temperature=0,
                                            stream=True, stream_options={"include_usage": True}):
            if ch.usage:
                usage = ch.usage
            if ch.choices and ch.choices[0].delta.content:
                parts.append(ch.choices[0].delta.content)
        return "".join(parts), usage

    joined, usage = streamed()
    assert joined == text and usage.completion_tokens == r.usage.completion_tokens
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: streamed(), range(4)))
    assert [t for t, _ in results] == [text] * 4  # decoded together, each as it is alone
    c = a.completions.create(model="tiny-chat", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert c.choices[0].text and c.usage.completion_tokens == 8
    b = OpenAI(base_url=f"{url}/v1", api_key=kb, max_retries=0)
    with pytest.raises(Exception) as e:
        b.chat.completions.create(model=model_id, messages=msgs, max_tokens=4)
    assert getattr(e.value, "status_code", None) == 404  # tenant B does not see tenant A's model


def test_a_client_that_goes_away_stops_its_generation(served):
    url, app = served
    _, key = new_tenant(app.state.tuneforge.sessions)
    state = app.state.tuneforge
    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 200,
            "temperature": 0}
    whole = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                       timeout=60).json()
    assert whole["usage"]["completion_tokens"] == 200  # left alone, it runs to max_tokens
    [entry] = state.inference.chat_models()
    with httpx.Client(timeout=60) as client, client.stream(
            "POST", f"{url}/v1/chat/completions", json={**body, "stream": True},
            headers={"Authorization": f"Bearer {key}"}) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]  # a few events, then the client hangs up
        assert any('"content"' in x for x in got)
    deadline = time.monotonic() + 30
    while entry.batcher.active:
        assert time.monotonic() < deadline, "the generation went on after the client left"
        time.sleep(0.01)
    state.meter.flush()
    from tuneforge.store.models import UsageRecord
    from tuneforge.store.tenants import authenticate

    with state.sessions() as s:
        tenant = authenticate(s, key).tenant_id
        used = [r.quantity for r in s.query(UsageRecord).filter_by(tenant_id=tenant, kind="completion_tokens")]
    assert sum(used) < 400  # 200 for the whole reply, and only part of the second


# --- errors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "field"), [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"bogus_field": 1}, "bogus_field"),
])
def test_unsupported_fields_get_a_400_that_names_them(api, extra, field):
    c = api.as_(api.tenant()[1])
    r = chat(c, "tiny-chat", max_tokens=2, **extra)
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["param"] == field and field in err["message"] and err["type"] == "invalid_request_error"


def test_fields_that_ask_for_nothing_are_accepted(api):
    c = api.as_(api.tenant()[1])
    r = chat(c, "tiny-chat", max_tokens=2, logprobs=False, tools=[], response_format={"type": "text"},
             presence_penalty=0, user="u-1", store=False, metadata={"a": "b"},
             messages=[{"role": "developer", "content": "Be brief."},
                       {"role": "user", "content": [{"type": "text", "text": "Say"}, {"type": "text", "text": "hi"}]}])
    assert r.status_code == 200, r.text


def test_image_parts_and_tool_messages_are_refused(api):
    c = api.as_(api.tenant()[1])
    image = [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]
    err = error_of(chat(c, "tiny-chat", image, max_tokens=2))
    assert "messages[0].content[1]" in err["message"] and "image" in err["message"]
    err = error_of(chat(c, "tiny-chat", [*HELLO, {"role": "tool", "content": "42", "tool_call_id": "x"}]))
    assert "messages[1]" in err["message"] and "tool" in err["message"]


def test_unknown_and_other_tenants_models_are_404_and_encoders_are_not_chat_models(api, lora_run, tiny_bert):
    key_a, key_b = api.tenant()[1], api.tenant()[1]
    model_id = install_chat_run(api.app, key_a, lora_run)
    a, b = api.as_(key_a), api.as_(key_b)
    for client, name in ((b, model_id), (a, "ft:tiny-chat:nobody:x:abcd1234"), (a, "no-such-model"),
                         (a, f"{model_id}:ckpt-step-3")):
        r = chat(client, name, max_tokens=2)
        assert r.status_code == 404, (name, r.text)
        assert error_of(r)["code"] == "model_not_found"
    r = b.post("/v1/completions", json={"model": model_id, "prompt": "hi", "max_tokens": 2})
    assert r.status_code == 404
    classifier = install_model(api.app, key_a, tiny_bert, "classification", name="clf")
    for name in (classifier, "tiny-bert"):
        r = chat(a, name, max_tokens=2)
        assert r.status_code == 400 and error_of(r)["code"] == "model_not_supported", r.text
        assert "not a chat model" in error_of(r)["message"]


def test_a_prompt_longer_than_the_context_and_too_many_tokens_are_400(api):
    c = api.as_(api.tenant()[1])
    r = chat(c, "tiny-chat", [{"role": "user", "content": "word " * 400}], max_tokens=4)
    assert r.status_code == 400
    err = error_of(r)
    assert err["code"] == "context_length_exceeded" and "256" in err["message"]
    r = chat(c, "tiny-chat", max_tokens=250)  # fits the cap of 200? no: over it
    assert r.status_code == 400 and error_of(r)["param"] == "max_tokens"
    r = chat(c, "tiny-chat", max_completion_tokens=190, messages=[{"role": "user", "content": "word " * 60}])
    assert r.status_code == 400 and error_of(r)["code"] == "context_length_exceeded"  # prompt + reply > 256
    r = chat(c, "tiny-chat", max_tokens=2, stream_options={"include_usage": True})
    assert r.status_code == 400 and error_of(r)["param"] == "stream_options"
    r = chat(c, "tiny-chat", max_tokens=2, stop=["a", "b", "c", "d", "e"])
    assert r.status_code == 400 and "stop" in error_of(r)["message"]
    r = chat(c, "tiny-chat", max_tokens=2, n=50)
    assert r.status_code == 400 and error_of(r)["param"] == "n"


# --- models, sharing, metering ----------------------------------------------------------------------------------


def test_lora_runs_share_one_base_and_models_lists_their_parent(api, lora_run):
    key = api.tenant()[1]
    c = api.as_(key)
    first, second = install_chat_run(api.app, key, lora_run, "one"), install_chat_run(api.app, key, lora_run, "two")
    msgs = [{"role": "user", "content": "Where is the Eiffel Tower?"}]
    alone = {m: chat(c, m, msgs, max_tokens=10, temperature=0).json()["choices"][0]["message"]["content"]
             for m in (first, second, "tiny-chat")}
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda m: chat(c, m, msgs, max_tokens=10, temperature=0).json(),
                                 [first, second, "tiny-chat"] * 2))
    assert [t["choices"][0]["message"]["content"] for t in together] == [alone[first], alone[second],
                                                                         alone["tiny-chat"]] * 2
    assert alone[first] == alone[second] != alone["tiny-chat"]  # the same adapter twice; the base differs
    [entry] = api.app.state.tuneforge.inference.chat_models()  # one copy of the base for all three
    assert len(entry.adapters) == 2
    listed = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
    assert listed[first]["parent"] == "tiny-chat" and listed[first]["task"] == "generation"
    assert listed["tiny-chat"]["parent"] is None and listed["tiny-chat"]["task"] == "generation"
    assert listed["tiny-bert"]["task"] is None
    assert c.delete(f"/v1/models/{first}").status_code == 200
    assert len(entry.adapters) == 1  # its adapter left the shared base


def test_prompt_and_completion_tokens_are_metered_per_model(api):
    key = api.tenant()[1]
    c = api.as_(key)
    r = chat(c, "tiny-chat", max_tokens=5, temperature=0, n=2).json()
    usage = c.get("/v1/usage").json()
    rows = {(x["model"], x["kind"]): x["quantity"] for x in usage["data"]}
    assert rows[("tiny-chat", "prompt_tokens")] == r["usage"]["prompt_tokens"]
    assert rows[("tiny-chat", "completion_tokens")] == r["usage"]["completion_tokens"]
    assert rows[("tiny-chat", "requests")] == 1


def test_tokens_are_rate_limited_per_minute_with_openais_headers(api):
    from tuneforge.api.ratelimit import MemoryRateLimiter

    c = api.as_(api.tenant(tokens_per_minute=200)[1])
    first = chat(c, "tiny-chat", max_tokens=5, temperature=0)
    assert first.status_code == 200, first.text
    took = first.json()["usage"]["prompt_tokens"] + 5  # the prompt and max_tokens, as OpenAI estimates
    assert first.headers["x-ratelimit-limit-tokens"] == "200"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 200 - took
    assert first.headers["x-ratelimit-reset-tokens"].endswith("s") and "x-ratelimit-limit-requests" in first.headers
    big = chat(c, "tiny-chat", max_tokens=199)  # more than the whole minute's tokens: no retry helps
    assert big.status_code == 429 and error_of(big)["code"] == "request_too_large"
    assert big.headers["x-should-retry"] == "false"
    statuses = [chat(c, "tiny-chat", max_tokens=40, temperature=0).status_code for _ in range(8)]
    assert statuses[0] == 200 and statuses[-1] == 429
    limited = chat(c, "tiny-chat", max_tokens=40)
    assert error_of(limited)["code"] == "tokens_limit_exceeded" and limited.headers["x-ratelimit-remaining-tokens"]
    assert int(limited.headers["retry-after"]) >= 1 and "x-should-retry" not in limited.headers

    clock = [0.0]
    limiter = MemoryRateLimiter(clock=lambda: clock[0])  # what a reply does not use is given back
    assert limiter.hit("t", 100, 80).allowed and not limiter.hit("t", 100, 30).allowed
    limiter.refund("t", 50)
    assert limiter.hit("t", 100, 30).remaining == 40


def test_chat_models_do_not_embed_base_or_fine_tuned(api, lora_run):
    """/v1/embeddings answers the same 400 for a base chat model and for a chat model fine-tuned from it."""
    key = api.tenant()[1]
    c = api.as_(key)
    model_id = install_chat_run(api.app, key, lora_run)
    for name in ("tiny-chat", model_id):
        r = c.post("/v1/embeddings", json={"model": name, "input": "hello"})
        assert r.status_code == 400, (name, r.text)
        assert error_of(r)["param"] == "model" and "encoder" in error_of(r)["message"], r.text
    assert c.post("/v1/embeddings", json={"model": "tiny-bert", "input": "hello"}).status_code == 200
