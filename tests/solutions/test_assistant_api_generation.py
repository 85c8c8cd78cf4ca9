"""/v1/solutions/assistant with generated answers and the handover queue, on SQLite and PostgreSQL: an assistant
whose writer is a base chat model served by the chat batcher, the writer checks at creation, the queue of
handed-over conversations and resolving them, and tenant isolation."""

from __future__ import annotations

import pytest

from tests.api.conftest import api, db_url  # noqa: F401  (the API fixtures, on both databases)
from tests.service_support import make_settings
from tests.solutions.test_assistant_generation import chat_model  # noqa: F401  (a chat model with room for passages)
from tuneforge.solutions.assistant.assistant import NOTHING_FOUND
from tuneforge.solutions.assistant.writer import writer_messages

BASE = "/v1/solutions/assistant"
KB = [
    {
        "question": "how do i cancel my subscription",
        "answer": "Open Settings, choose Plan and press Cancel.",
        "intent": "cancel",
    },
    {"question": "where is my order", "answer": "Orders arrive within five days.", "intent": "delivery"},
]
CONFIG = {
    "threshold": 0.0,
    "answer_mode": "generate",
    "writer": "tiny-chat",
    "writer_passages": 2,
    "writer_max_new_tokens": 8,
    "require_citation": False,
}


@pytest.fixture
def settings(db_url, tmp_path, tiny_bert, chat_model):  # noqa: F811
    return make_settings(tmp_path / "data", db_url, base_models={"tiny-bert": tiny_bert, "tiny-chat": chat_model})


def _create(c, **config):
    r = c.post(
        f"{BASE}/assistants",
        json={"name": "gen", "knowledge": KB, "encoder": "tiny-bert", "config": {**CONFIG, **config}},
    )
    assert r.status_code == 200, r.text
    return r.json()


def _say(c, aid, sid, text):
    r = c.post(f"{BASE}/assistants/{aid}/sessions/{sid}/messages", json={"text": text})
    assert r.status_code == 200, r.text
    return r.json()


def test_generated_answers_are_served_by_the_chat_model(api, chat_model):  # noqa: F811
    from tuneforge.solutions.assistant.knowledge import passages_from_rows
    from tuneforge.tasks.generation.generate import GenerationOptions

    _, key = api.tenant()
    c = api.as_(key)
    a = _create(c)
    sid = c.post(f"{BASE}/assistants/{a['id']}/sessions").json()["id"]
    reply = _say(c, a["id"], sid, "where is my order")
    assert (reply["reason"], reply["handover"]) == ("generated", False)
    assert [p["n"] for p in reply["passages"][:2]] == [1, 2] and isinstance(reply["citations"], list)
    # the served text is the served chat model's reply to the writer prompt, as /v1/chat/completions gives it
    by_id = {p.id: p for p in passages_from_rows(KB, "knowledge")}
    shown = [by_id[p["id"]] for p in reply["passages"][:2]]
    target = api.app.state.tuneforge.inference.chat_base(chat_model)
    expected = (
        target.submit(
            target.render(writer_messages("where is my order", shown)),
            GenerationOptions(max_new_tokens=8),
            strip=True,
            stream=False,
        )
        .result()
        .text
    )
    assert reply["text"] == expected
    turns = c.get(f"{BASE}/assistants/{a['id']}/sessions/{sid}").json()["turns"]
    assert turns[-1]["reason"] == "generated"


def test_nothing_relevant_goes_to_the_handover_queue_until_resolved(api):  # noqa: F811
    _, key = api.tenant()
    c = api.as_(key)
    a = _create(c, passage_min_similarity=1.0)  # nothing is ever relevant enough
    sid = c.post(f"{BASE}/assistants/{a['id']}/sessions").json()["id"]
    reply = _say(c, a["id"], sid, "what is the weather on mars")
    assert (reply["handover"], reply["reason"], reply["text"]) == (True, "nothing_relevant", NOTHING_FOUND)
    other = c.post(f"{BASE}/assistants/{a['id']}/sessions").json()["id"]
    assert _say(c, a["id"], other, "let me talk to a human")["reason"] == "asked_for_human"
    open_sid = c.post(f"{BASE}/assistants/{a['id']}/sessions").json()["id"]  # never handed over: not queued

    queue = c.get(f"{BASE}/assistants/{a['id']}/handovers").json()["data"]
    assert [(h["session_id"], h["reason"], h["message"]) for h in queue] == [
        (sid, "nothing_relevant", "what is the weather on mars"),
        (other, "asked_for_human", "let me talk to a human"),
    ]
    assert all(h["object"] == "assistant.handover" and h["status"] == "handed_over" for h in queue)
    assert open_sid not in {h["session_id"] for h in queue}

    r = c.post(f"{BASE}/assistants/{a['id']}/handovers/{sid}/resolve")
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    assert c.post(f"{BASE}/assistants/{a['id']}/handovers/{sid}/resolve").status_code == 409
    assert c.post(f"{BASE}/assistants/{a['id']}/handovers/{open_sid}/resolve").status_code == 409
    assert [h["session_id"] for h in c.get(f"{BASE}/assistants/{a['id']}/handovers").json()["data"]] == [other]
    resolved = c.get(f"{BASE}/assistants/{a['id']}/handovers", params={"status": "resolved"}).json()["data"]
    assert [h["session_id"] for h in resolved] == [sid]
    assert c.post(f"{BASE}/assistants/{a['id']}/sessions/{sid}/messages", json={"text": "hi"}).status_code == 409
    assert c.get(f"{BASE}/assistants/{a['id']}/handovers", params={"status": "open"}).status_code in (400, 422)

    # another tenant sees neither the queue nor its items
    _, key2 = api.tenant()
    g = api.as_(key2)
    assert g.get(f"{BASE}/assistants/{a['id']}/handovers").status_code == 404
    assert g.post(f"{BASE}/assistants/{a['id']}/handovers/{other}/resolve").status_code == 404


def test_the_writer_is_checked_when_the_assistant_is_created(api):  # noqa: F811
    _, key = api.tenant()
    c = api.as_(key)

    def create(config):
        return c.post(
            f"{BASE}/assistants", json={"name": "x", "knowledge": KB, "encoder": "tiny-bert", "config": config}
        )

    r = create({"answer_mode": "generate"})
    assert r.status_code == 400 and "needs a writer" in r.text and "tiny-chat" in r.text
    r = create({"answer_mode": "generate", "writer": "tiny-bert"})
    assert r.status_code == 400 and "not a chat model" in r.text
    r = create({"answer_mode": "generate", "writer": "ft:tiny-chat:someone-else:x:1234"})
    assert r.status_code == 404
    r = create({"answer_mode": "nonsense"})
    assert r.status_code == 400 and "answer_mode" in r.text
