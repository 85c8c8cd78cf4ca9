"""/v1/fine_tuning/jobs without a worker: creation and its checks, listing, control, quotas, isolation."""

from __future__ import annotations

import pytest

from tests.service_support import jsonl, rows
from tuneforge.store.db import utcnow
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
    ({"metadata": {}}, "metadata.task: required"),
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
