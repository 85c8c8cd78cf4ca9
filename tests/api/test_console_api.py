"""The API routes the console needs: file preview/validation, clean, split; job estimates; model evaluations;
the tenant's API keys. Each one is tenant-scoped: another tenant gets 404."""

from __future__ import annotations

import json

from tests.service_support import jsonl, rows
from tuneforge.store.db import utcnow
from tuneforge.store.models import Model
from tuneforge.store.tenants import authenticate


def _upload(c, data: bytes, name: str = "train.jsonl") -> str:
    r = c.post("/v1/files", files={"file": (name, data)}, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_preview_guesses_the_task_and_counts_labels(acme):
    fid = _upload(acme, jsonl(rows(6, 4)))
    r = acme.get(f"/v1/files/{fid}/preview", params={"limit": 3})
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["task"] == "classification" and p["valid"] and p["records"] == 10 and p["examples"] == 10
    assert p["labels"] == {"positive": 6, "negative": 4} and p["problems"] == []
    assert p["columns"] == ["text", "label"] and [x["line"] for x in p["rows"]] == [1, 2, 3]
    assert p["rows"][0]["text"] == "a good movie" and p["file"]["id"] == fid
    ner = [{"tokens": ["john", "lives", "in", "paris"], "tags": ["B-PER", "O", "O", "B-LOC"]}] * 3
    q = acme.get(f"/v1/files/{_upload(acme, jsonl(ner))}/preview").json()
    assert q["task"] == "ner" and q["labels"] == {"PER": 3, "LOC": 3}


def test_preview_lists_every_problem_by_line_with_the_file_name_only(acme):
    data = jsonl(rows(3, 3)) + b'{"text": "no label here"}\n{"label": "positive"}\n'
    p = acme.get(f"/v1/files/{_upload(acme, data, 'bad.jsonl')}/preview").json()
    assert not p["valid"] and p["examples"] == 0 and p["labels"] == {} and p["records"] == 8
    assert [x["line"] for x in p["problems"]] == [7, 8], p["problems"]
    assert all(x["file"] == "bad.jsonl" for x in p["problems"])  # never a server path
    assert "artifacts" not in json.dumps(p)
    broken = acme.get(f"/v1/files/{_upload(acme, data + b'not json', 'broken.jsonl')}/preview").json()
    assert not broken["valid"] and broken["problems"][0]["line"] == 9 and broken["rows"] == []
    r = acme.get(f"/v1/files/{_upload(acme, jsonl(rows()))}/preview", params={"task": "translation"})
    assert r.status_code == 400


def test_clean_and_split_make_new_files(acme):
    data = jsonl(rows() + rows()[:3] + [{"text": "a good movie", "label": "negative"}])
    fid = _upload(acme, data, "reviews.jsonl")
    r = acme.post(f"/v1/files/{fid}/clean", json={"task": "classification"})
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["file"]["filename"] == "reviews.clean.jsonl" and c["file"]["id"] != fid
    assert c["counts"].get("duplicate", 0) + c["counts"].get("label_conflict", 0) == len(c["removed"]) >= 3
    assert all(isinstance(x["line"], int) and x["reason"] for x in c["removed"])
    cleaned = acme.get(f"/v1/files/{c['file']['id']}/preview").json()
    assert cleaned["valid"] and cleaned["examples"] == c["kept"]
    s = acme.post(f"/v1/files/{c['file']['id']}/split", json={"task": "classification", "dev": 0.25, "test": 0})
    assert s.status_code == 200, s.text
    parts = s.json()["files"]
    assert set(parts) == {"train", "dev"} and parts["train"]["filename"] == "reviews.clean.train.jsonl"
    n = [acme.get(f"/v1/files/{parts[k]['id']}/preview").json()["examples"] for k in ("train", "dev")]
    assert sum(n) == c["kept"] and n[1] >= 2
    r = acme.post(f"/v1/files/{fid}/split", json={"task": "classification", "dev": 0.6, "test": 0.5})
    assert r.status_code == 400 and "dev + test" in r.json()["error"]["message"]


def test_estimate_counts_tokens_and_compares_with_the_quota(api):
    _, key = api.tenant(trained_tokens_per_month=1000)
    c = api.as_(key)
    fid = _upload(c, jsonl(rows()))
    body = {"model": "tiny-bert", "training_file": fid, "metadata": {"task": "classification"},
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}}
    r = c.post("/v1/fine_tuning/estimates", json=body)
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["examples"] == 12 and e["epochs"] == 2 and e["tokens_per_epoch"] > 12
    assert e["trained_tokens"] == 2 * e["tokens_per_epoch"] and e["quota"] == {"limit": 1000, "used": 0,
                                                                               "remaining": 1000}
    assert e["within_quota"] == (e["trained_tokens"] <= 1000)
    auto = c.post("/v1/fine_tuning/estimates", json={**body, "method": None}).json()
    assert auto["epochs"] == 3 and auto["trained_tokens"] == 3 * e["tokens_per_epoch"]
    bad = c.post("/v1/fine_tuning/estimates", json={**body, "training_file": _upload(c, b'{"text": "x"}\n')})
    assert bad.status_code == 400 and "train.jsonl [label]: no label column" in bad.json()["error"]["message"]
    assert c.get("/v1/fine_tuning/jobs").json()["data"] == []  # an estimate creates nothing


def _fake_trained_model(api, key: str) -> str:
    state = api.app.state.tuneforge
    with api.sessions() as s:
        p = authenticate(s, key)
        model_id = f"ft:tiny-bert:{p.tenant_name}:eval1234"
        storage_key = f"models/{p.tenant_id}/eval"
        s.add(Model(id=model_id, tenant_id=p.tenant_id, job_id="ftjob-x", base_model="tiny-bert",
                    task="classification", storage_key=storage_key, bytes=3, created_at=utcnow()))
        s.commit()
    folder = state.storage.local_path(storage_key)
    (folder / "eval-dev").mkdir(parents=True)
    (folder / "tuneforge.json").write_text(json.dumps({
        "task": "classification", "labels": ["negative", "positive"], "multi_label": False, "max_length": 32,
        "base_model": {"name": "tiny-bert"}, "method": "full",
        "training": {"steps": 12, "epochs": 2.0, "final_loss": 0.5}}))
    (folder / "eval-dev" / "metrics.json").write_text(json.dumps({
        "accuracy": 0.75, "macro_f1": 0.7, "n": 4,
        "per_class": {"negative": {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2},
                      "positive": {"precision": 0.667, "recall": 1.0, "f1": 0.8, "support": 2}},
        "confusion_matrix": {"labels": ["negative", "positive"], "matrix": [[1, 1], [0, 2]]}}))
    (folder / "eval-dev" / "report.md").write_text("# Dev evaluation\n")
    return model_id


def test_model_evaluation_for_its_owner_only(api):
    _, ka = api.tenant()
    _, kb = api.tenant()
    mid = _fake_trained_model(api, ka)
    r = api.as_(ka).get(f"/v1/models/{mid}/evaluation")
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["model"] == mid and e["task"] == "classification" and e["labels"] == ["negative", "positive"]
    assert e["training"]["steps"] == 12 and e["evaluation"]["name"] == "dev"
    assert e["evaluation"]["metrics"] == {"accuracy": 0.75, "macro_f1": 0.7, "n": 4}
    assert e["evaluation"]["confusion_matrix"]["matrix"] == [[1, 1], [0, 2]]
    assert e["evaluation"]["per_class"]["positive"]["f1"] == 0.8
    assert e["evaluation"]["report_markdown"].startswith("# Dev evaluation")
    assert api.as_(kb).get(f"/v1/models/{mid}/evaluation").status_code == 404
    assert api.as_(ka).get("/v1/models/tiny-bert/evaluation").status_code == 400


def test_base_models_carry_language_and_size(acme):
    models = {m["id"]: m for m in acme.get("/v1/models").json()["data"]}
    assert models["tiny-bert"]["owned_by"] == "tuneforge" and models["tiny-bert"]["language"] is None
    if "minilm" in models:
        assert models["minilm"]["language"] == "English" and models["minilm"]["parameters"] == "22.7M"


def test_api_keys_create_show_once_list_and_revoke(api):
    name, key = api.tenant()
    c = api.as_(key)
    me = c.get("/v1/api_keys/current").json()
    assert me["tenant"] == name and me["scopes"] == ["admin", "predict", "train"]
    r = c.post("/v1/api_keys", json={"name": "website", "scopes": ["predict"]})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["secret"].startswith("tf_") and new["prefix"] == new["secret"][:10] and new["scopes"] == ["predict"]
    listed = c.get("/v1/api_keys").json()["data"]
    assert {k["id"] for k in listed} == {me["key_id"], new["id"]} and all("secret" not in k for k in listed)
    website = api.as_(new["secret"])
    assert website.get("/v1/api_keys/current").json()["scopes"] == ["predict"]
    assert website.get("/v1/api_keys").status_code == 403  # keys are managed with the admin scope
    assert website.post("/v1/api_keys", json={"scopes": ["admin"]}).status_code == 403
    assert c.delete(f"/v1/api_keys/{me['key_id']}").status_code == 409  # not the key in use
    revoked = c.delete(f"/v1/api_keys/{new['id']}").json()
    assert revoked["revoked_at"] is not None
    assert website.get("/v1/api_keys/current").status_code == 401
    assert c.post("/v1/api_keys", json={"scopes": ["root"]}).status_code == 400


def test_another_tenant_gets_404_for_file_and_key_routes(acme, globex):
    fid = _upload(acme, jsonl(rows()))
    key_id = acme.post("/v1/api_keys", json={"scopes": ["predict"]}).json()["id"]
    for r in (globex.get(f"/v1/files/{fid}/preview"),
              globex.post(f"/v1/files/{fid}/clean", json={"task": "classification"}),
              globex.post(f"/v1/files/{fid}/split", json={"task": "classification"}),
              globex.delete(f"/v1/api_keys/{key_id}")):
        assert r.status_code == 404, r.text
    r = globex.post("/v1/fine_tuning/estimates", json={"model": "tiny-bert", "training_file": fid,
                                                       "metadata": {"task": "classification"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "file_not_found"
    assert key_id not in [k["id"] for k in globex.get("/v1/api_keys").json()["data"]]
    assert acme.get(f"/v1/files/{fid}/preview").status_code == 200
