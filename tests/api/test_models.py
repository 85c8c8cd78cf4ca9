"""/v1/models and /v1/predict: base models for all, fine-tuned models for their owner only."""

from __future__ import annotations

from tuneforge.store.db import utcnow
from tuneforge.store.models import Model
from tuneforge.store.tenants import authenticate


def _fake_model(api, key: str, name: str = "abc") -> str:
    """A fine-tuned model's row and folder (no weights: enough for listing, lookup and deletion)."""
    state = api.app.state.tuneforge
    with api.sessions() as s:
        p = authenticate(s, key)
        model_id = f"ft:tiny-bert:{p.tenant_name}:{name}"
        key_path = f"models/{p.tenant_id}/{name}"
        s.add(Model(id=model_id, tenant_id=p.tenant_id, job_id="ftjob-x", base_model="tiny-bert",
                    task="classification", storage_key=key_path, bytes=3, created_at=utcnow()))
        s.commit()
    folder = state.storage.local_path(key_path)
    folder.mkdir(parents=True)
    (folder / "weights").write_bytes(b"abc")
    return model_id


def test_models_list_base_models_and_own_models_only(api):
    _, ka = api.tenant()
    _, kb = api.tenant()
    mid = _fake_model(api, ka)
    a = [m["id"] for m in api.as_(ka).get("/v1/models").json()["data"]]
    b = [m["id"] for m in api.as_(kb).get("/v1/models").json()["data"]]
    assert "tiny-bert" in a and "tiny-bert" in b and mid in a and mid not in b
    got = api.as_(ka).get(f"/v1/models/{mid}").json()
    assert got["object"] == "model" and got["task"] == "classification" and got["owned_by"] != "tuneforge"
    assert api.as_(ka).get("/v1/models/tiny-bert").json()["owned_by"] == "tuneforge"


def test_another_tenant_gets_404_for_models_and_predict(api):
    _, ka = api.tenant()
    _, kb = api.tenant()
    mid = _fake_model(api, ka)
    b = api.as_(kb)
    for r in (b.get(f"/v1/models/{mid}"), b.delete(f"/v1/models/{mid}"),
              b.post("/v1/predict", json={"model": mid, "inputs": ["hello"]})):
        assert r.status_code == 404, r.text
        assert r.json()["error"]["param"] == "model"
    assert api.as_(ka).get(f"/v1/models/{mid}").status_code == 200


def test_delete_own_model_but_not_a_base_model(api):
    _, ka = api.tenant()
    mid = _fake_model(api, ka)
    a = api.as_(ka)
    r = a.delete("/v1/models/tiny-bert")
    assert r.status_code == 403 and r.json()["error"]["code"] == "cannot_delete_base_model"
    assert a.delete(f"/v1/models/{mid}").json() == {"id": mid, "object": "model", "deleted": True}
    assert a.get(f"/v1/models/{mid}").status_code == 404
    assert not any(api.app.state.tuneforge.settings.artifacts_dir.glob("models/*/abc"))


def test_predict_checks_its_input(api):
    _, ka = api.tenant()
    a = api.as_(ka)
    r = a.post("/v1/predict", json={"model": "ft:none", "inputs": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "inputs"
    r = a.post("/v1/predict", json={"model": "ft:none", "inputs": ["x"] * 300})
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_inputs"
