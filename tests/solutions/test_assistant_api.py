"""/v1/solutions/assistant on SQLite and PostgreSQL: create an assistant from an uploaded knowledge base and a
fine-tuned intent model, converse with context, hand over, feedback and its export, scopes, tenant isolation."""

from __future__ import annotations

import shutil

import pytest

from tests.api.conftest import api, db_url, settings  # noqa: F401  (the API fixtures, on both databases)
from tests.conftest import write_jsonl
from tests.service_support import jsonl
from tuneforge.store.db import utcnow
from tuneforge.store.models import Model
from tuneforge.store.tenants import authenticate

BASE = "/v1/solutions/assistant"
KB = [
    {"question": "how do i cancel my subscription", "answer": "Open Settings, choose Plan and press Cancel.",
     "intent": "cancel"},
    {"question": "where is my order", "answer": "Orders arrive within five days.", "intent": "delivery"},
    {"question": "i want my money back", "answer": "Refunds are paid within ten days.", "intent": "refund"},
]
TICKETS = [{"text": t, "label": lab} for lab, ts in {
    "cancel": ["cancel my plan", "please cancel", "stop my subscription", "cancel it", "end my plan now"],
    "delivery": ["where is my order", "my parcel is late", "order not here", "track my parcel", "late order"],
    "refund": ["money back please", "i want a refund", "refund me", "give my money back", "refund now"],
}.items() for t in ts] * 2


@pytest.fixture(scope="module")
def intent_run(tmp_path_factory, tiny_bert):
    from tuneforge.training.config import TrainConfig
    from tuneforge.training.recipe import train

    d = tmp_path_factory.mktemp("intent")
    train(TrainConfig(task="classification", data=write_jsonl(d / "train.jsonl", TICKETS), output=d / "run",
                      base_model=str(tiny_bert), epochs=1, batch_size=8, max_length=32))
    return d / "run"


def _client(api, **kw):  # noqa: F811
    name, key = api.tenant(**kw)
    return api.as_(key), key


def _register_model(api, key, run):  # noqa: F811
    state = api.app.state.tuneforge
    with api.sessions() as s:
        p = authenticate(s, key)
        model_id = f"ft:tiny-bert:{p.tenant_name}:intents"
        storage_key = f"models/{p.tenant_id}/intents"
        s.add(Model(id=model_id, tenant_id=p.tenant_id, job_id="ftjob-x", base_model="tiny-bert",
                    task="classification", storage_key=storage_key, bytes=1, created_at=utcnow()))
        s.commit()
    shutil.copytree(run, state.storage.local_path(storage_key))
    return model_id


def _upload(c, rows, name="faq.jsonl"):
    r = c.post("/v1/files", files={"file": (name, jsonl(rows))}, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_assistant_lifecycle_and_isolation(api, intent_run):  # noqa: F811
    acme, key = _client(api)
    model_id = _register_model(api, key, intent_run)
    file_id = _upload(acme, KB)
    r = acme.post(f"{BASE}/assistants", json={
        "name": "support", "knowledge_file": file_id, "intent_model": model_id, "encoder": "tiny-bert",
        "knowledge": [{"question": "do you ship abroad", "answer": "Yes, worldwide.", "intent": "delivery"}],
        "articles": [{"title": "Help", "format": "html", "text": "<h2 id='pay'>Payments</h2><p>Cards only.</p>"}],
        "config": {"threshold": 0.0, "templates": {"refund": "Refunds take ten days."}}})
    assert r.status_code == 200, r.text
    a = r.json()
    assert (a["passages"], a["intent_model"], a["config"]["threshold"]) == (5, model_id, 0.0)
    assert [x["id"] for x in acme.get(f"{BASE}/assistants").json()["data"]] == [a["id"]]

    sid = acme.post(f"{BASE}/assistants/{a['id']}/sessions").json()["id"]
    r = acme.post(f"{BASE}/assistants/{a['id']}/sessions/{sid}/messages", json={"text": "where is my order"})
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["turn"] == 2 and not reply["handover"] and reply["intent"] in ("cancel", "delivery", "refund")
    assert reply["passages"] and reply["text"]
    r = acme.post(f"{BASE}/assistants/{a['id']}/sessions/{sid}/messages", json={"text": "and when?"})
    assert r.json()["turn"] == 4 and r.json()["used_context"] in (True, False)

    # feedback by session and turn fills in the message and the predicted intent
    r = acme.post(f"{BASE}/assistants/{a['id']}/feedback", json={
        "session_id": sid, "turn": 2, "helpful": False, "correct_intent": "delivery",
        "correct_answer": "Track it under Orders."})
    assert r.status_code == 200, r.text
    assert r.json()["message"] == "where is my order" and r.json()["intent"] == reply["intent"]
    assert acme.post(f"{BASE}/assistants/{a['id']}/feedback",
                     json={"session_id": sid, "turn": 1, "helpful": True}).status_code == 400  # a user turn
    export = acme.get(f"{BASE}/assistants/{a['id']}/feedback/export").json()
    assert export["intents"] == [{"text": "where is my order", "label": "delivery", "source": "feedback"}]
    assert export["knowledge"][0]["answer"] == "Track it under Orders."

    # asking for a human hands over with the transcript; the session is then closed to the bot
    r = acme.post(f"{BASE}/assistants/{a['id']}/sessions/{sid}/messages", json={"text": "let me talk to a human"})
    assert r.json()["handover"] and r.json()["reason"] == "asked_for_human"
    assert [t["text"] for t in r.json()["transcript"]][0] == "where is my order"
    conv = acme.get(f"{BASE}/assistants/{a['id']}/sessions/{sid}").json()
    assert conv["status"] == "handed_over" and len(conv["turns"]) == 6
    r = acme.post(f"{BASE}/assistants/{a['id']}/sessions/{sid}/messages", json={"text": "hello?"})
    assert r.status_code == 409

    # another tenant sees none of it
    globex, _ = _client(api)
    for url in (f"{BASE}/assistants/{a['id']}", f"{BASE}/assistants/{a['id']}/sessions/{sid}",
                f"{BASE}/assistants/{a['id']}/feedback/export"):
        assert globex.get(url).status_code == 404, url
    assert globex.post(f"{BASE}/assistants/{a['id']}/sessions").status_code == 404
    assert globex.post(f"{BASE}/assistants/{a['id']}/sessions/{sid}/messages", json={"text": "hi"}).status_code == 404
    assert globex.post(f"{BASE}/assistants/{a['id']}/feedback",
                       json={"message": "x", "helpful": True}).status_code == 404
    assert globex.delete(f"{BASE}/assistants/{a['id']}").status_code == 404
    assert globex.get(f"{BASE}/assistants").json()["data"] == []
    # nor can it build an assistant on acme's file or model
    r = globex.post(f"{BASE}/assistants", json={"name": "x", "knowledge_file": file_id, "encoder": "tiny-bert"})
    assert r.status_code == 404
    r = globex.post(f"{BASE}/assistants", json={"name": "x", "knowledge": KB, "intent_model": model_id,
                                                "encoder": "tiny-bert"})
    assert r.status_code == 404

    assert acme.delete(f"{BASE}/assistants/{a['id']}").status_code == 200
    assert acme.get(f"{BASE}/assistants/{a['id']}").status_code == 404


def test_bad_requests_and_scopes(api):  # noqa: F811
    acme, _ = _client(api)
    r = acme.post(f"{BASE}/assistants", json={"name": "x", "encoder": "tiny-bert"})
    assert r.status_code == 400 and "knowledge" in r.text
    r = acme.post(f"{BASE}/assistants", json={"name": "x", "knowledge": KB, "encoder": "no-such-model"})
    assert r.status_code == 400 and "encoder" in r.text
    r = acme.post(f"{BASE}/assistants", json={"name": "x", "knowledge": KB, "encoder": "tiny-bert",
                                              "config": {"threshold": 2, "nonsense": 1}})
    assert r.status_code == 400 and "threshold" in r.text and "nonsense" in r.text
    bad = _upload(acme, [{"question": "q only"}])
    r = acme.post(f"{BASE}/assistants", json={"name": "x", "knowledge_file": bad, "encoder": "tiny-bert"})
    assert r.status_code == 400 and "faq.jsonl" in r.text  # the upload's name, not a storage path

    # without an intent model the intent comes from retrieval; a predict-only key converses but cannot configure
    a = acme.post(f"{BASE}/assistants", json={"name": "kb only", "knowledge": KB, "encoder": "tiny-bert",
                                              "config": {"threshold": 0.0}}).json()
    _, pkey = api.tenant(scopes=["predict"])
    predict_only = api.as_(pkey)
    assert predict_only.post(f"{BASE}/assistants", json={"name": "y", "knowledge": KB}).status_code == 403
    assert acme.get(f"{BASE}/assistants/{a['id']}").status_code == 200
    sid = acme.post(f"{BASE}/assistants/{a['id']}/sessions").json()["id"]
    r = acme.post(f"{BASE}/assistants/{a['id']}/sessions/{sid}/messages",
                  json={"text": KB[2]["question"] + "\n" + KB[2]["answer"]})
    assert (r.json()["intent"], r.json()["handover"]) == ("refund", False)
    assert acme.post(f"{BASE}/assistants/{a['id']}/sessions/{sid}/messages", json={"text": ""}).status_code in (400,
                                                                                                            422)
