"""The console with generative models (issue 19): a chat file previewed as conversations (role-labelled turns, a
weight-0 turn marked as not learned, preference pairs' chosen and rejected answers, a broken record's problems),
a generation job's page plotting loss and token accuracy as they are logged, and the chat playground streaming a
reply from a tiny chat model into the page (system prompt, temperature, max tokens; the conversation kept on the
page and sent with each turn; Stop; Clear), in both themes, on a phone, and in Chinese.

A server of this module's own serves the tiny Llama of tests/conftest.py as the base model ``tiny-chat`` and trains
a LoRA job on it with one embedded worker. With ``TUNEFORGE_CONSOLE_DOCS=1`` (scripts/console_screenshots.py) the
pages are also saved to ``docs/console/``, the playground chatting with the shipped ``smollm2``."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import PHONE, ROOT, Server, Watch, new_page, output_dir
from tests.service_support import jsonl, make_settings, serve

A11Y = (Path(__file__).parent / "a11y.js").read_text(encoding="utf-8")
DOCS = os.environ.get("TUNEFORGE_CONSOLE_DOCS") == "1"
#: the screenshots docs/console.md shows
DOC_SHOTS = {"dataset-chat-light", "dataset-chat-dark", "dataset-pairs-light", "dataset-pairs-dark", "job-chat-light",
             "job-chat-dark", "model-chat-light", "model-chat-dark", "model-chat-phone"}

QA = [("Where is the Eiffel Tower?", "It is in Paris."), ("Say hello.", "Hello there!"),
      ("What is the answer?", "The answer is 42."), ("How do I reset my password?", "From the settings page.")]
SYSTEM = "You are the support assistant of an online shop. Answer in one sentence."
#: line 1 has a system prompt; line 2 a first answer kept as context only (weight 0); then plain Q&A
TRAIN = [
    {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QA[0][0]},
                  {"role": "assistant", "content": QA[0][1]}]},
    {"messages": [{"role": "user", "content": QA[1][0]}, {"role": "assistant", "content": "Hi.", "weight": 0},
                  {"role": "user", "content": "Say it warmly."}, {"role": "assistant", "content": QA[1][1]}]},
    *({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
      for i in range(10) for q, a in [QA[i % 4]]),
]
DEV = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in QA]
#: OpenAI's preference format
PAIRS = [{"input": {"messages": [{"role": "user", "content": q}]},
          "preferred_output": [{"role": "assistant", "content": a}],
          "non_preferred_output": [{"role": "assistant", "content": "No."}]} for q, a in QA * 3]
#: line 2 has a role the chat format does not know, line 3 a message without content
BAD = [DEV[0], {"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "ok"}]},
       {"messages": [{"role": "user"}, {"role": "assistant", "content": "ok"}]}, DEV[1]]

#: Test hook, installed before the page's scripts: with ``window.__holdChat = n`` set, a chat stream passes on its
#: first n Server-Sent Events from the server and then holds the rest until the request is aborted (so Stop can be
#: pressed mid-reply whatever the machine's speed). The reply itself comes from the real server.
HOLD = """
window.__holdChat = null;
const realFetch = window.fetch.bind(window);
window.fetch = async (input, init = {}) => {
  const url = String(input && input.url ? input.url : input);
  const n = window.__holdChat;
  if (n === null || !url.endsWith("/v1/chat/completions")) return realFetch(input, init);
  const { signal, ...rest } = init;
  const r = await realFetch(input, rest);
  const events = (await r.text()).split("\\n\\n").filter(Boolean).slice(0, n);
  const body = new ReadableStream({ start(c) {
    for (const e of events) c.enqueue(new TextEncoder().encode(e + "\\n\\n"));
    const aborted = () => c.error(new DOMException("The user aborted a request.", "AbortError"));
    if (signal && signal.aborted) aborted();
    else if (signal) signal.addEventListener("abort", aborted);
  } });
  return new Response(body, { status: r.status, headers: r.headers });
};
"""


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[Server]:
    from tuneforge.api import create_app

    data = tmp_path_factory.mktemp("console-chat-data")
    settings = make_settings(data, f"sqlite:///{data / 'tuneforge.db'}", embedded_workers=1,
                             base_models={"tiny-chat": tiny_chat_model}, heartbeat_seconds=0.5, chat_max_tokens=64)
    app = create_app(settings)
    with serve(app) as url:
        yield Server(url, app)


def _http(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def _wait_job(http: httpx.Client, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/v1/fine_tuning/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job still {job['status']}"
        time.sleep(0.3)


def _job_body(train: str, **more: Any) -> dict[str, Any]:
    epochs = more.pop("n_epochs", 2)
    return {"model": "tiny-chat", "training_file": train, "suffix": "chat", "precision": "fp32", "logging_steps": 1,
            "seed": 0,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {
                "n_epochs": epochs, "batch_size": 4, "learning_rate_multiplier": 50}}}, **more}


@pytest.fixture(scope="module")
def chat(chat_server: Server) -> dict[str, Any]:
    """A tenant with a chat training file, its dev file, a preference file, a broken chat file, and a finished
    LoRA job on the tiny chat model (its model)."""
    _, key = chat_server.tenant(max_concurrent_jobs=5)
    with _http(chat_server, key) as http:
        def upload(name: str, rows: list[dict[str, Any]]) -> str:
            r = http.post("/v1/files", files={"file": (name, jsonl(rows))}, data={"purpose": "fine-tune"})
            assert r.status_code == 200, r.text
            return str(r.json()["id"])

        ids = {"train": upload("support-chat.jsonl", TRAIN), "dev": upload("support-chat.dev.jsonl", DEV),
               "pairs": upload("preferences.jsonl", PAIRS), "bad": upload("chat-draft.jsonl", BAD)}
        job = http.post("/v1/fine_tuning/jobs", json=_job_body(ids["train"], validation_file=ids["dev"])).json()
        assert "id" in job, job
        job = _wait_job(http, job["id"])
        assert job["status"] == "succeeded", job
    return {"key": key, **ids, "job": job["id"], "model": job["fine_tuned_model"]}


@pytest.fixture
def cwatch(chat_server: Server) -> Watch:
    return Watch(chat_server.url)


@pytest.fixture
def cpage(browser: Any, cwatch: Watch) -> Iterator[Any]:
    p = new_page(browser, cwatch)
    yield p
    p.context.close()
    assert not cwatch.errors, cwatch.errors
    assert not cwatch.foreign, f"requests left the server: {cwatch.foreign}"


def _open(page: Any, url: str, key: str) -> None:
    page.goto("/console/login")
    page.evaluate("k => sessionStorage.setItem('tf_key', k)", key)
    page.goto(url)
    page.wait_for_selector("html[data-ready]")


def _idle(page: Any) -> None:
    page.wait_for_selector("#chat-card[data-state=idle]", timeout=60_000)


def _say(page: Any, text: str) -> None:
    """Type ``text`` in the playground, send it with Enter and wait for the reply to end."""
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")
    page.wait_for_function("() => document.getElementById('chat-card').dataset.state === 'streaming' || "
                           "document.querySelector('#chat-log li:last-child[data-finish]')")
    _idle(page)


def _bubbles(page: Any) -> list[tuple[str, str]]:
    return [tuple(x) for x in page.eval_on_selector_all(
        "#chat-log > li", "els => els.map(e => [e.dataset.role, e.querySelector('.content').textContent])")]


def _reply(http: httpx.Client, model: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    r = http.post("/v1/chat/completions", json={"model": model, "messages": messages, "max_tokens": max_tokens,
                                                "temperature": 0})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _streamed_deltas(http: httpx.Client, model: str, messages: list[dict[str, str]], max_tokens: int) -> list[str]:
    with http.stream("POST", "/v1/chat/completions", json={"model": model, "messages": messages, "stream": True,
                                                           "max_tokens": max_tokens, "temperature": 0}) as r:
        text = "".join(r.iter_text())
    events = [e.removeprefix("data: ") for e in text.strip().split("\n\n")]
    assert events[-1] == "[DONE]"
    return [c["choices"][0]["delta"].get("content") or "" for c in map(json.loads, events[:-1]) if c["choices"]]


def _shoot(page: Any, name: str) -> None:
    path = output_dir() / "chat" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    if DOCS and name in DOC_SHOTS:
        docs = ROOT / "docs" / "console"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs / path.name)


# --- the datasets API: a chat file as conversations ---------------------------------------------------------


def test_the_conversations_route_reads_each_record_as_training_does(chat_server, chat):
    with _http(chat_server, chat["key"]) as http:
        r = http.get(f"/v1/files/{chat['train']}/conversations", params={"limit": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "file.conversations" and body["file"]["id"] == chat["train"]
        assert body["problems"] == [] and [c["line"] for c in body["data"]] == [1, 2, 3]
        first, second = body["data"][0], body["data"][1]
        assert first["format"] == "chat" and [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
        assert first["messages"][0]["content"] == SYSTEM and first["messages"][0]["weight"] is None
        assert [m["weight"] for m in second["messages"]] == [None, 0, None, 1]  # a missing weight is 1 (learned)
        assert first["prompt"] is None and first["problems"] == []

        pairs = http.get(f"/v1/files/{chat['pairs']}/conversations").json()["data"]
        assert len(pairs) == len(PAIRS) and {c["format"] for c in pairs} == {"openai_preference"}
        assert pairs[0]["messages"] is None and pairs[0]["prompt"] == [
            {"role": "user", "content": QA[0][0], "name": None, "weight": None}]
        assert pairs[0]["chosen"][0]["content"] == QA[0][1] and pairs[0]["rejected"][0]["content"] == "No."

        bad = http.get(f"/v1/files/{chat['bad']}/conversations").json()["data"]
        assert [c["line"] for c in bad] == [1, 2, 3, 4] and not bad[0]["problems"] and not bad[3]["problems"]
        [role] = bad[1]["problems"]
        assert role["line"] == 2 and role["field"] == "messages[0].role" and "robot" in role["message"]
        assert bad[1]["messages"] is None and bad[2]["problems"][0]["field"] == "messages[0].content"

        # another tenant's file is not found
        _, other = chat_server.tenant()
        with _http(chat_server, other) as them:
            assert them.get(f"/v1/files/{chat['train']}/conversations").status_code == 404


def test_a_file_that_is_not_json_lines_reports_why_instead_of_conversations(chat_server, chat):
    with _http(chat_server, chat["key"]) as http:
        f = http.post("/v1/files", files={"file": ("broken.jsonl", b'{"messages": [\nnot json\n')},
                      data={"purpose": "fine-tune"}).json()
        body = http.get(f"/v1/files/{f['id']}/conversations").json()
    assert body["data"] == [] or all(c["problems"] for c in body["data"])
    assert body["problems"] and all(p["file"] == "broken.jsonl" for p in body["problems"])
    assert {p["line"] for p in body["problems"]} == {1, 2}


# --- the dataset page ---------------------------------------------------------------------------------------


def test_a_chat_file_is_previewed_as_conversations(cpage, chat):
    page = cpage
    _open(page, f"/console/datasets/{chat['train']}", chat["key"])
    page.wait_for_selector("#conversations article")
    assert page.input_value("#task-select") == "" and page.get_attribute("#task-select", "data-guess") == "generation"
    assert "12 examples" in page.inner_text("#valid-note")
    # no label chart and no cleaner for chat data; the raw rows are folded away under the conversations
    assert page.locator("#labels-card").is_hidden() and page.locator("#clean-card").is_hidden()
    assert page.locator("#split-form").is_visible() and page.locator("#preview-table").is_hidden()
    page.click("#raw-rows summary")
    assert page.locator("#preview-table tbody tr").count() == 12
    articles = page.locator("#conversations article")
    assert articles.count() == 12
    first = articles.nth(0)
    assert first.locator("h3").inner_text() == "Line 1 chat"
    roles = first.locator("li.bubble")
    assert [roles.nth(i).get_attribute("data-role") for i in range(3)] == ["system", "user", "assistant"]
    assert [roles.nth(i).locator(".role").inner_text() for i in range(3)] == ["System", "User", "Assistant"]
    assert roles.nth(0).locator(".content").inner_text() == SYSTEM
    # the weight-0 turn (and only it) is marked as not learned
    marked = page.locator("#conversations li.not-learned")
    assert marked.count() == 1 and marked.locator(".content").inner_text() == "Hi."
    assert "not learned (weight 0)" in marked.locator(".role").inner_text()
    assert marked.evaluate("e => e.closest('article').dataset.line") == "2"
    _shoot(page, "dataset-chat-light")

    page.goto(f"/console/datasets/{chat['pairs']}?lang=zh")
    page.wait_for_selector("html[data-ready]")
    page.wait_for_selector("#conversations article")
    pair = page.locator("#conversations article").first
    assert pair.get_attribute("data-kind") == "pair"
    assert pair.locator(".side.chosen h4").inner_text() == "优选回答"
    assert pair.locator(".side.chosen .content").inner_text() == QA[0][1]
    assert pair.locator(".side.rejected h4").inner_text() == "劣选回答"
    assert pair.locator(".side.rejected .content").inner_text() == "No."
    assert pair.locator("li.bubble.user .role").first.inner_text() == "用户"

    page.goto(f"/console/datasets/{chat['bad']}?lang=en")
    page.wait_for_selector("html[data-ready]")
    page.wait_for_selector("#conversations article")
    kinds = page.eval_on_selector_all("#conversations article", "els => els.map(e => e.dataset.kind)")
    assert kinds == ["sft", "bad", "bad", "sft"]
    broken = page.locator("#conversations article[data-line='2']")
    assert "messages[0].role" in broken.inner_text() and "robot" in broken.inner_text()
    assert page.inner_text("#problem-count .v") == "2"  # the validation report says the same


def test_a_chat_file_is_fine_tuned_from_the_new_job_form(cpage, chat_server, chat):
    page = cpage
    _open(page, f"/console/datasets/{chat['train']}", chat["key"])
    href = page.get_attribute("#train-link", "href")
    assert href == f"/console/jobs/new?training_file={chat['train']}&task=generation"
    # with the base model named (the form's first chat model would be smollm2: its estimate loads the real model)
    page.goto(f"{href}&model=tiny-chat")
    page.wait_for_selector("html[data-ready]")
    assert page.input_value("#task") == "generation"
    # chat models only (the base tiny-chat and smollm2, and this tenant's chat model to continue from)
    options = page.eval_on_selector_all("#base-model option", "os => os.map(o => o.value)")
    assert "tiny-chat" in options and chat["model"] in options and "tiny-bert" not in options
    assert page.inner_text("#method option") == "LoRA (low-rank adapters)"
    assert page.input_value("#base-model") == "tiny-chat"
    page.get_by_label("Validation file").select_option(chat["dev"])
    page.get_by_label("Epochs").fill("1")
    page.get_by_role("button", name="Update estimate").click()
    page.wait_for_function("() => document.querySelector('#estimate-tokens') && "
                           "document.querySelector('#estimate dd').textContent === '12'")
    assert int(page.inner_text("#estimate-tokens").replace(",", "")) > 12 * 5
    page.get_by_role("button", name="Start fine-tuning").click()
    page.wait_for_url("**/console/jobs/ftjob-*")
    page.wait_for_selector("html[data-ready]")
    job_id = page.inner_text("#job-id")
    try:
        assert page.locator("#accuracy-card").is_visible() and page.locator("#dev-card").is_hidden()
        assert page.inner_text("#job-stats .stat:first-child .v") == "Text generation (chat)"
        with _http(chat_server, chat["key"]) as http:
            job = http.get(f"/v1/fine_tuning/jobs/{job_id}").json()
        assert job["task"] == "generation" and job["model"] == "tiny-chat" and job["validation_file"] == chat["dev"]
    finally:
        with _http(chat_server, chat["key"]) as http:
            http.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")


# --- the job page -------------------------------------------------------------------------------------------


def _points(page: Any, canvas: str) -> int:
    return int(page.get_attribute(canvas, "data-points") or 0)


def test_a_generation_job_plots_loss_and_token_accuracy(cpage, chat_server, chat):
    page = cpage
    _open(page, f"/console/jobs/{chat['job']}", chat["key"])
    page.wait_for_selector("#job-status[data-status=succeeded]")
    assert page.locator("#dev-card").is_hidden() and page.locator("#accuracy-card").is_visible()
    assert page.inner_text("#accuracy-h") == "Token accuracy"
    with _http(chat_server, chat["key"]) as http:
        events = http.get(f"/v1/fine_tuning/jobs/{chat['job']}/events", params={"limit": 1000}).json()["data"]
    logged = [e["data"] for e in events if e["type"] == "metrics" and e["data"] and "train_runtime" not in e["data"]
              and isinstance(e["data"].get("step"), int)]
    count = lambda key: sum(key in d for d in logged)  # noqa: E731
    assert count("train_loss") == 6 and count("valid_loss") == 2  # 3 steps an epoch, an evaluation per epoch
    assert _points(page, "#loss-chart") == count("train_loss") + count("valid_loss")
    assert _points(page, "#accuracy-chart") == count("train_mean_token_accuracy") + count("valid_mean_token_accuracy")
    assert count("train_mean_token_accuracy") == 6 and count("valid_mean_token_accuracy") == 2
    legends = page.evaluate("""() => Chart.getChart('accuracy-chart').data.datasets.map(d => [d.label,
        d.data.map(p => p.x)])""")
    assert legends == [["training token accuracy", [1, 2, 3, 4, 5, 6]], ["dev token accuracy", [3, 6]]]
    checkpoints = page.inner_text("#checkpoints-table tbody")
    assert "dev token accuracy" in checkpoints and "dev loss" in checkpoints
    _shoot(page, "job-chat-light")
    page.goto(f"/console/jobs/{chat['job']}?lang=zh")
    page.wait_for_selector("html[data-ready]")
    assert page.inner_text("#accuracy-h") == "词元准确率"
    assert "训练词元准确率=" in page.inner_text("#events-table tbody")  # "Step 6/6: train_mean_token_accuracy=..."
    page.goto(f"/console/jobs/{chat['job']}?lang=en")


def test_the_job_page_adds_points_as_they_are_logged(cpage, chat_server, chat):
    page = cpage
    with _http(chat_server, chat["key"]) as http:
        job = http.post("/v1/fine_tuning/jobs", json=_job_body(chat["train"], n_epochs=80)).json()
        try:
            _open(page, f"/console/jobs/{job['id']}", chat["key"])
            at_load = _points(page, "#accuracy-chart")
            page.wait_for_function(f"() => Number(document.getElementById('accuracy-chart').dataset.points) > "
                                   f"{at_load}", timeout=120_000)
            first = _points(page, "#accuracy-chart")
            page.wait_for_function(f"() => Number(document.getElementById('accuracy-chart').dataset.points) > "
                                   f"{first}", timeout=120_000)
            assert _points(page, "#loss-chart") > 0
        finally:
            http.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel")


# --- the chat playground ------------------------------------------------------------------------------------


def test_a_reply_streams_into_the_playground_and_the_conversation_is_sent_with_each_turn(cpage, chat_server,
                                                                                            chat):
    page = cpage
    page.add_init_script(HOLD)
    # the base tiny-chat model: random weights, so its replies run on for many pieces (the fine-tuned one has
    # learned to stop after a word)
    model, key = "tiny-chat", chat["key"]
    sent: list[dict[str, Any]] = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/v1/chat/completions") else None)
    _open(page, "/console/models", key)
    page.click("#base-table a:has-text('tiny-chat')")  # a base chat model has a page; the encoders have none
    page.wait_for_url("**/console/models/tiny-chat")
    page.wait_for_selector("html[data-ready]")
    # a generative model chats; the encoders' predict form is not shown, and the snippets use the chat route
    assert page.locator("#chat-card").is_visible() and page.locator("#play-card").is_hidden()
    assert page.locator("#eval-card").is_hidden()  # a base model has no evaluation of its own
    assert "/v1/chat/completions" in page.inner_text("#curl-snippet")
    assert "from openai import OpenAI" in page.inner_text("#python-snippet") and model in page.inner_text(
        "#python-snippet")
    assert page.locator("#chat-empty").is_visible() and _bubbles(page) == []

    page.get_by_label("System prompt").fill(SYSTEM)
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Max tokens").fill("16")
    with _http(chat_server, key) as http:
        turn1 = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QA[0][0]}]
        expected = _reply(http, model, turn1, 16)["choices"][0]["message"]["content"]
        deltas = _streamed_deltas(http, model, turn1, 16)
        assert "".join(deltas) == expected and sum(bool(d) for d in deltas) > 1, deltas  # several pieces to stream

        # count the text updates of the reply while it streams
        page.evaluate("""() => { window.__updates = 0; new MutationObserver((ms) => { for (const m of ms)
            if (m.target.classList && m.target.classList.contains('content')
                && m.target.parentElement.dataset.role === 'assistant') window.__updates++; })
            .observe(document.getElementById('chat-log'), {subtree: true, childList: true, characterData: true}); }""")
        _say(page, QA[0][0])
        assert sent[-1] == {"model": model, "messages": turn1, "temperature": 0, "max_tokens": 16, "stream": True,
                            "stream_options": {"include_usage": True}}
        assert _bubbles(page) == [("user", QA[0][0]), ("assistant", expected)]
        assert page.evaluate("window.__updates") == sum(bool(d) for d in deltas)  # one per piece, as it came
        status = page.inner_text("#chat-status")
        assert "prompt tokens" in status and "reply tokens" in status

        # Stop mid-reply: the text so far is kept and is part of the conversation the next turn sends
        page.evaluate("window.__holdChat = 3")  # the role chunk and two pieces of text, then nothing
        page.fill("#chat-input", QA[1][0])
        page.click("#chat-send")
        page.wait_for_selector("#chat-log li[data-streaming] .content:not(:empty)")
        assert page.locator("#chat-stop").is_visible() and page.locator("#chat-send").is_disabled()
        page.get_by_role("button", name="Stop").click()
        _idle(page)
        page.evaluate("window.__holdChat = null")
        turn2 = [*turn1, {"role": "assistant", "content": expected}, {"role": "user", "content": QA[1][0]}]
        full = _reply(http, model, turn2, 16)["choices"][0]["message"]["content"]
        partial = _bubbles(page)[-1]
        assert partial[0] == "assistant" and partial[1] and full.startswith(partial[1]), (partial, full)
        assert page.get_attribute("#chat-log li:last-child", "data-finish") == "stopped"
        assert page.inner_text("#chat-status") == "Stopped: the reply so far is kept."
        assert page.locator("#chat-stop").is_hidden()

        _say(page, QA[2][0])
        turn3 = [*turn2, {"role": "assistant", "content": partial[1]}, {"role": "user", "content": QA[2][0]}]
        assert sent[-1]["messages"] == turn3
        third = _reply(http, model, turn3, 16)["choices"][0]["message"]["content"]
        assert _bubbles(page)[-1] == ("assistant", third or "(empty reply)") and len(_bubbles(page)) == 6
    _shoot(page, "model-chat-e2e")

    # the conversation and the settings stay on the page through a reload; Clear forgets the conversation
    page.reload()
    page.wait_for_selector("html[data-ready]")
    assert len(_bubbles(page)) == 6 and page.input_value("#chat-system") == SYSTEM
    assert page.input_value("#chat-temperature") == "0" and page.input_value("#chat-max-tokens") == "16"
    page.get_by_role("button", name="Clear conversation").click()
    assert _bubbles(page) == [] and page.locator("#chat-empty").is_visible()
    assert page.inner_text("#chat-status") == "Conversation cleared."
    page.reload()
    page.wait_for_selector("html[data-ready]")
    assert _bubbles(page) == [] and page.input_value("#chat-system") == SYSTEM  # the settings stay

    # Stop before anything came back: the turn is taken back and the message returns to the box
    page.evaluate("window.__holdChat = 0")
    page.fill("#chat-input", "Are you there?")
    page.click("#chat-send")
    page.wait_for_selector("#chat-card[data-state=streaming]")
    page.click("#chat-stop")
    _idle(page)
    assert _bubbles(page) == [] and page.input_value("#chat-input") == "Are you there?"
    assert page.locator("#chat-error").is_hidden(), page.inner_text("#chat-error")
    assert "Stopped before the reply began" in page.inner_text("#chat-status")
    page.evaluate("window.__holdChat = null")

    # an error from the server (more tokens than it allows) is shown, and the turn is taken back too
    page.get_by_label("Max tokens").fill("100")
    page.click("#chat-send")
    alert = page.locator("#chat-error")
    alert.wait_for()
    assert "100" in alert.inner_text() and "64" in alert.inner_text()
    assert _bubbles(page) == [] and page.input_value("#chat-input") == "Are you there?"


def test_a_fine_tuned_chat_model_chats_in_chinese(cpage, chat_server, chat):
    page = cpage
    _open(page, "/console/models?lang=zh", chat["key"])
    row = page.locator("#models-table tr", has_text=chat["model"])
    assert row.locator("td").nth(1).inner_text() == "文本生成（对话）"
    row.locator("a").click()
    page.wait_for_selector("html[data-ready]")
    assert page.inner_text("#chat-h") == "对话试用" and page.locator("#play-card").is_hidden()
    assert page.locator("#eval-card").is_visible()  # trained with a validation file: its dev evaluation
    assert page.locator("#metric-valid_mean_token_accuracy .k").inner_text() == "验证集词元准确率"
    page.get_by_label("温度").fill("0")
    page.get_by_label("最大 token 数").fill("12")
    _say(page, QA[1][0])
    with _http(chat_server, chat["key"]) as http:
        expected = _reply(http, chat["model"], [{"role": "user", "content": QA[1][0]}], 12)
    [(role, text)] = _bubbles(page)[1:]
    assert role == "assistant" and text == (expected["choices"][0]["message"]["content"] or "（空回复）")
    assert page.locator("#chat-log li.user .role").inner_text() == "用户"
    assert "提示" in page.inner_text("#chat-status")


# --- accessibility, themes, phone ---------------------------------------------------------------------------


def _pages(c: dict[str, Any]) -> dict[str, str]:
    model = "smollm2" if DOCS else c["model"]
    return {"dataset-chat": f"/console/datasets/{c['train']}", "dataset-pairs": f"/console/datasets/{c['pairs']}",
            "dataset-chat-problems": f"/console/datasets/{c['bad']}", "job-chat": f"/console/jobs/{c['job']}",
            "new-job-chat": f"/console/jobs/new?training_file={c['train']}&task=generation&model=tiny-chat",
            "models-chat": "/console/models", "model-chat": f"/console/models/{model}",
            "model-base-chat": "/console/models/tiny-chat"}


def _visit(page: Any, url: str, key: str) -> None:
    _open(page, url, key)
    if "/models/" in url:
        page.get_by_label("System prompt").fill(SYSTEM if not DOCS else "You are a helpful, concise assistant.")
        page.get_by_label("Temperature").fill("0")
        page.get_by_label("Max tokens").fill("12" if not DOCS else "48")
        _say(page, QA[1][0] if not DOCS else "What is the capital of France, and what is it famous for?")
    if "/datasets/" in url:
        page.wait_for_selector("#conversations article")
    page.evaluate("document.fonts.ready")
    page.evaluate("window.scrollTo(0, 0)")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_chat_pages_pass_the_accessibility_checks(browser, cwatch, chat, theme):
    page = new_page(browser, cwatch, scheme=theme)
    problems = {}
    for name, url in _pages(chat).items():
        _visit(page, url, chat["key"])
        found = page.evaluate(A11Y)
        if found:
            problems[name] = found
        _shoot(page, f"{name}-{theme}")
    page.context.close()
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)
    assert not cwatch.errors and not cwatch.foreign, (cwatch.errors, cwatch.foreign)


def test_the_chat_pages_fit_a_phone_screen(browser, cwatch, chat):
    page = new_page(browser, cwatch, viewport=PHONE)
    too_wide = {}
    for name, url in _pages(chat).items():
        _visit(page, url, chat["key"])
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if width[0] > width[1] + 1:
            too_wide[name] = width
        if name in ("dataset-chat", "model-chat", "job-chat"):
            _shoot(page, f"{name}-phone")
    page.context.close()
    assert not too_wide, f"pages wider than the phone's screen: {too_wide}"
    assert not cwatch.errors, cwatch.errors
