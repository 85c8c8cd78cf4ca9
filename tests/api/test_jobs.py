"""/v1/fine_tuning/jobs without a worker: creation and its checks, listing, control, quotas, isolation."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from tests.service_support import jsonl, rows
from tuneforge.jobs.queue import add_event
from tuneforge.store.db import utcnow
from tuneforge.store.models import Checkpoint, Job
from tuneforge.store.tenants import authenticate
from tuneforge.store.usage import record_usage


def _file(c) -> str:
    r = c.post("/v1/files", files={"file": ("train.jsonl", jsonl(rows()))}, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def _body(fid: str, **kw):
    return {"model": "tiny-bert", "training_file": fid, "metadata": {"task": "classification"},
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}, **kw}


def test_create_and_retrieve_a_job(acme):
    fid = _file(acme)
    r = acme.post("/v1/fine_tuning/jobs", json=_body(fid, suffix="v1", seed=7, max_length=32))
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["object"] == "fine_tuning.job" and j["id"].startswith("ftjob-")
    assert j["status"] == "validating_files" and j["model"] == "tiny-bert" and j["training_file"] == fid
    assert j["seed"] == 7 and j["user_provided_suffix"] == "v1" and j["task"] == "classification"
    assert j["hyperparameters"] == {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": "auto"}
    assert j["options"] == {"max_length": 32} and j["error"] is None and j["fine_tuned_model"] is None
    assert acme.get(f"/v1/fine_tuning/jobs/{j['id']}").json()["id"] == j["id"]
    events = acme.get(f"/v1/fine_tuning/jobs/{j['id']}/events").json()
    assert events["object"] == "list" and events["data"][0]["message"].startswith("Created fine-tuning job")
    assert acme.get(f"/v1/fine_tuning/jobs/{j['id']}/checkpoints").json()["data"] == []


@pytest.mark.parametrize(("change", "expect"), [
    ({"metadata": {"task": "translation"}}, "'translation' is not a task"),
    ({"warmup_ratio": 5, "not_an_option": 1}, "not_an_option"),
    ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}}, "n_epochs"),
    ({"method": {"type": "dpo"}}, "'dpo' is not available"),
    ({"model": "gpt-4o-mini"}, "cannot be fine-tuned here"),
    ({"training_file": "file-doesnotexist"}, "no such file"),
    ({"output": "/etc"}, "set by the job itself"),
])
def test_bad_requests_are_refused_with_every_problem(acme, change, expect):
    r = acme.post("/v1/fine_tuning/jobs", json={**_body(_file(acme)), **change})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert expect in err["message"] and err["type"] == "invalid_request_error"
    if "warmup_ratio" in change:
        assert "warmup_ratio" in err["message"]  # both problems reported at once
    assert acme.get("/v1/fine_tuning/jobs").json()["data"] == []


def test_another_tenant_gets_404_for_every_job_route(acme, globex):
    jid = acme.post("/v1/fine_tuning/jobs", json=_body(_file(acme))).json()["id"]
    for r in (globex.get(f"/v1/fine_tuning/jobs/{jid}"), globex.post(f"/v1/fine_tuning/jobs/{jid}/cancel"),
              globex.post(f"/v1/fine_tuning/jobs/{jid}/pause"), globex.post(f"/v1/fine_tuning/jobs/{jid}/resume"),
              globex.get(f"/v1/fine_tuning/jobs/{jid}/events"),
              globex.get(f"/v1/fine_tuning/jobs/{jid}/checkpoints")):
        assert r.status_code == 404, r.text
    assert globex.get("/v1/fine_tuning/jobs").json()["data"] == []
    # and nor can another tenant train on acme's file
    fid = acme.get(f"/v1/fine_tuning/jobs/{jid}").json()["training_file"]
    r = globex.post("/v1/fine_tuning/jobs", json=_body(fid))
    assert r.status_code == 400 and r.json()["error"]["code"] == "file_not_found"
    assert acme.get(f"/v1/fine_tuning/jobs/{jid}").json()["status"] == "validating_files"


def test_list_pages_with_after_and_limit(api):
    c = api.as_(api.tenant(max_concurrent_jobs=10)[1])
    fid = _file(c)
    ids = [c.post("/v1/fine_tuning/jobs", json=_body(fid)).json()["id"] for _ in range(5)]
    first = c.get("/v1/fine_tuning/jobs", params={"limit": 2}).json()
    assert len(first["data"]) == 2 and first["has_more"]
    seen, after = [], None
    while True:
        page = c.get("/v1/fine_tuning/jobs", params={"limit": 2, **({"after": after} if after else {})}).json()
        seen += [j["id"] for j in page["data"]]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert seen == ids[::-1]  # newest first, each once


def test_cancel_pause_and_resume(api):
    c = api.as_(api.tenant(max_concurrent_jobs=10)[1])
    fid = _file(c)
    jid = c.post("/v1/fine_tuning/jobs", json=_body(fid)).json()["id"]
    assert c.post(f"/v1/fine_tuning/jobs/{jid}/pause").json()["status"] == "paused"
    assert c.post(f"/v1/fine_tuning/jobs/{jid}/resume").json()["status"] == "validating_files"
    r = c.post(f"/v1/fine_tuning/jobs/{jid}/resume")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_job_state"
    assert c.post(f"/v1/fine_tuning/jobs/{jid}/cancel").json()["status"] == "cancelled"
    r = c.post(f"/v1/fine_tuning/jobs/{jid}/cancel")
    assert r.status_code == 400 and "cancelled" in r.json()["error"]["message"]
    msgs = [e["message"] for e in c.get(f"/v1/fine_tuning/jobs/{jid}/events").json()["data"]]
    assert any("cancelled" in m for m in msgs) and any("resumed" in m for m in msgs)


def test_concurrent_jobs_quota_answers_429(api):
    c = api.as_(api.tenant(max_concurrent_jobs=1)[1])
    fid = _file(c)
    first = c.post("/v1/fine_tuning/jobs", json=_body(fid)).json()["id"]
    r = c.post("/v1/fine_tuning/jobs", json=_body(fid))
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "concurrent_jobs_limit" and "allows 1" in r.json()["error"]["message"]
    assert r.headers["x-ratelimit-limit-jobs"] == "1" and r.headers["retry-after"]
    c.post(f"/v1/fine_tuning/jobs/{first}/cancel")
    assert c.post("/v1/fine_tuning/jobs", json=_body(fid)).status_code == 200  # a slot is free again


def test_trained_tokens_quota_answers_429(api):
    name, key = api.tenant(trained_tokens_per_month=1000)
    c = api.as_(key)
    with api.sessions() as s:
        p = authenticate(s, key)
        record_usage(s, tenant_id=p.tenant_id, model="ft:x", kind="trained_tokens", quantity=1000, at=utcnow())
        s.commit()
    r = c.post("/v1/fine_tuning/jobs", json=_body(_file(c)))
    assert r.status_code == 429 and r.json()["error"]["code"] == "trained_tokens_limit"
    assert r.headers["x-ratelimit-remaining-tokens"] == "0" and r.headers["x-should-retry"] == "false"


def test_idempotency_key_on_job_creation(acme):
    fid = _file(acme)
    h = {"Idempotency-Key": "job-abc"}
    a = acme.post("/v1/fine_tuning/jobs", json=_body(fid), headers=h)
    b = acme.post("/v1/fine_tuning/jobs", json=_body(fid), headers=h)
    assert a.status_code == b.status_code == 200 and a.json()["id"] == b.json()["id"]
    assert b.headers["idempotent-replayed"] == "true"
    c = acme.post("/v1/fine_tuning/jobs", json=_body(fid, suffix="other"), headers=h)
    assert c.status_code == 422 and c.json()["error"]["code"] == "idempotency_key_reused"
    assert len(acme.get("/v1/fine_tuning/jobs").json()["data"]) == 1


def test_a_failed_request_releases_its_idempotency_key(api):
    c = api.as_(api.tenant()[1])
    fid = _file(c)
    h = {"Idempotency-Key": "retry-me"}
    bad = c.post("/v1/fine_tuning/jobs", json={**_body(fid), "metadata": {"task": "nope"}}, headers=h)
    assert bad.status_code == 400
    # the same key with the corrected body: the first (failed) attempt left nothing behind
    assert c.post("/v1/fine_tuning/jobs", json=_body(fid), headers=h).status_code == 200


def test_a_file_in_use_cannot_be_deleted(acme):
    fid = _file(acme)
    jid = acme.post("/v1/fine_tuning/jobs", json=_body(fid)).json()["id"]
    r = acme.delete(f"/v1/files/{fid}")
    assert r.status_code == 409 and jid in r.json()["error"]["message"]
    acme.post(f"/v1/fine_tuning/jobs/{jid}/cancel")
    assert acme.delete(f"/v1/files/{fid}").status_code == 200


def test_scopes_are_enforced(api):
    name, _ = api.tenant()
    from tuneforge.store.tenants import create_api_key

    with api.sessions() as s:
        _, predict_only = create_api_key(s, tenant=name, scopes=["predict"])
    c = api.as_(predict_only)
    r = c.get("/v1/fine_tuning/jobs")
    assert r.status_code == 403 and r.json()["error"]["code"] == "missing_scope"
    assert c.get("/v1/models").status_code == 200


def _upload(c, name: str, content: bytes) -> str:
    r = c.post("/v1/files", files={"file": (name, content)}, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


NER = [{"tokens": ["john", "lives", "in", "paris"], "tags": ["B-PER", "O", "O", "B-LOC"]}] * 3
SQUAD = {"version": "v2", "data": [{"title": "t", "paragraphs": [{"context": "paris is the capital of france", "qas": [
    {"id": f"q{i}", "question": "what is the capital of france?",
     "answers": [{"text": "paris", "answer_start": 0}]} for i in range(3)]}]}]}


def test_without_metadata_task_the_task_is_inferred_from_the_training_file(api):
    c = api.as_(api.tenant(max_concurrent_jobs=10)[1])
    for name, content, task in (("train.jsonl", jsonl(rows()), "classification"), ("ner.jsonl", jsonl(NER), "ner"),
                                ("squad.json", json.dumps(SQUAD).encode(), "qa")):
        fid = _upload(c, name, content)
        for route in ("/v1/fine_tuning/jobs", "/v1/fine_tuning/estimates"):
            r = c.post(route, json={"model": "tiny-bert", "training_file": fid})
            assert r.status_code == 200, r.text
            assert r.json()["task"] == task, (name, route)


def test_a_file_whose_task_cannot_be_told_is_refused_naming_the_line(api):
    c = api.as_(api.tenant()[1])
    odd = _upload(c, "odd.jsonl", jsonl([{"foo": 1, "bar": "x"}] * 3))
    r = c.post("/v1/fine_tuning/jobs", json={"model": "tiny-bert", "training_file": odd})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_training_file" and err["param"] == "training_file"
    assert "odd.jsonl" in err["message"] and "line 1" in err["message"] and "metadata.task" in err["message"]
    bad = _upload(c, "bad.jsonl", jsonl(rows())[:-1] + b"\n{not json\n")
    r = c.post("/v1/fine_tuning/jobs", json={"model": "tiny-bert", "training_file": bad})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_training_file"
    assert "line 13" in r.json()["error"]["message"], r.json()["error"]["message"]
    assert "/" not in r.json()["error"]["message"].split("metadata.task")[0]  # no server path
    assert c.get("/v1/fine_tuning/jobs").json()["data"] == []


def _running(api, jid: str) -> None:
    with api.sessions() as s:
        job = s.get(Job, jid)
        job.status, job.attempt, job.started_at, job.validated_at = "running", 2, utcnow(), utcnow()
        job.lease_owner, job.lease_expires_at = "w", utcnow() + timedelta(minutes=5)
        s.commit()


def test_cancel_answers_cancelled_at_once_even_while_training(api):
    c = api.as_(api.tenant(max_concurrent_jobs=10)[1])
    jid = c.post("/v1/fine_tuning/jobs", json=_body(_file(c))).json()["id"]
    _running(api, jid)
    r = c.post(f"/v1/fine_tuning/jobs/{jid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert c.get(f"/v1/fine_tuning/jobs/{jid}").json()["status"] == "cancelled"
    for action in ("cancel", "pause", "resume"):
        r = c.post(f"/v1/fine_tuning/jobs/{jid}/{action}")
        assert r.status_code == 400 and "it is cancelled" in r.json()["error"]["message"], (action, r.text)
    with api.sessions() as s:
        assert s.get(Job, jid).control == "cancel"  # the worker still stops the training at its next step


def test_estimated_finish_comes_from_the_measured_throughput(api):
    c = api.as_(api.tenant()[1])
    jid = c.post("/v1/fine_tuning/jobs", json=_body(_file(c))).json()["id"]
    assert c.get(f"/v1/fine_tuning/jobs/{jid}").json()["estimated_finish"] is None
    _running(api, jid)
    t0 = utcnow() - timedelta(seconds=100)
    with api.sessions() as s:
        for step, at in ((10, t0), (60, t0 + timedelta(seconds=50))):  # 1 step per second
            e = add_event(s, jid, f"Step {step}", attempt=2, type="metrics",
                          data={"step": step, "total_steps": 160, "loss": 0.5})
            e.created_at = at
        s.commit()
    got = c.get(f"/v1/fine_tuning/jobs/{jid}").json()["estimated_finish"]
    expect = (t0 + timedelta(seconds=50 + 100)).timestamp()  # 100 steps left at 1 step/s
    assert got is not None and abs(got - expect) <= 2, (got, expect)
    assert c.get("/v1/fine_tuning/jobs").json()["data"][0]["estimated_finish"] == got


def test_a_succeeded_job_has_a_metrics_csv_result_file(api):
    c = api.as_(api.tenant()[1])
    jid = c.post("/v1/fine_tuning/jobs", json=_body(_file(c))).json()["id"]
    with api.sessions() as s:
        for step, data in ((2, {"loss": 0.7, "epoch": 1.0}), (2, {"eval_accuracy": 0.5, "eval_runtime": 0.1}),
                           (4, {"loss": 0.4, "epoch": 2.0})):
            add_event(s, jid, f"Step {step}", attempt=2, type="metrics", data={"step": step, **data})
        add_event(s, jid, "Step 1", attempt=1, type="metrics", data={"step": 1, "loss": 9.9})  # an earlier attempt
        job = s.get(Job, jid)
        job.status, job.attempt, job.finished_at, job.fine_tuned_model = "succeeded", 2, utcnow(), "ft:x:y:z"
        s.commit()
    j = c.get(f"/v1/fine_tuning/jobs/{jid}").json()
    assert len(j["result_files"]) == 1
    fid = j["result_files"][0]
    assert c.get(f"/v1/fine_tuning/jobs/{jid}").json()["result_files"] == [fid]  # written once
    meta = c.get(f"/v1/files/{fid}").json()
    assert meta["purpose"] == "fine-tune-results" and meta["filename"] == "step_metrics.csv"
    table = list(csv.DictReader(io.StringIO(c.get(f"/v1/files/{fid}/content").text)))
    assert [r["step"] for r in table] == ["2", "4"]
    assert table[0]["train_loss"] == "0.7" and table[0]["eval_accuracy"] == "0.5" and "eval_runtime" not in table[0]
    assert table[1]["train_loss"] == "0.4" and table[1]["eval_accuracy"] == ""


def test_checkpoint_ids_name_the_fine_tuned_model(api):
    name, key = api.tenant()
    c = api.as_(key)
    jid = c.post("/v1/fine_tuning/jobs", json=_body(_file(c), suffix="v2")).json()["id"]
    with api.sessions() as s:
        s.add(Checkpoint(id="ftckpt-abc", job_id=jid, step=6, attempt=2, metrics={"step": 6}, created_at=utcnow()))
        s.commit()
    ck = c.get(f"/v1/fine_tuning/jobs/{jid}/checkpoints").json()["data"][0]
    assert ck["fine_tuned_model_checkpoint"] == f"ft:tiny-bert:{name}:v2:{jid.split('-', 1)[1][:8]}:ckpt-step-6"


def test_a_checkpoint_that_was_not_kept_is_a_clear_404_for_predict(api):
    from tuneforge.store.models import Model

    _, key = api.tenant()
    c = api.as_(key)
    jid = c.post("/v1/fine_tuning/jobs", json=_body(_file(c))).json()["id"]
    with api.sessions() as s:
        job = s.get(Job, jid)
        s.add(Model(id="ft:tiny-bert:t:x:abcd1234", tenant_id=job.tenant_id, job_id=jid, base_model="tiny-bert",
                    task="classification", storage_key=f"models/{job.tenant_id}/{jid}", bytes=0,
                    created_at=utcnow()))
        s.add(Checkpoint(id="ftckpt-old", job_id=jid, step=2, attempt=2, metrics={}, created_at=utcnow()))
        s.commit()
    r = c.post("/v1/predict", json={"model": "ft:tiny-bert:t:x:abcd1234:ckpt-step-2", "inputs": ["hi"]})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    assert "was not kept" in r.json()["error"]["message"]
    r = c.post("/v1/predict", json={"model": "ft:tiny-bert:t:x:abcd1234:ckpt-step-3", "inputs": ["hi"]})
    assert r.status_code == 404 and "No such model" in r.json()["error"]["message"]
