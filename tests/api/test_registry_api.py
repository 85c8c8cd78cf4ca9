"""/v1/registry and ``name@ref`` serving: register fine-tuned models as versions, promote, roll back; /v1/predict
follows the alias from the next request on, and a rollback restores the old version's predictions exactly. Another
tenant's names are a 404."""

from __future__ import annotations

from tests.service_support import install_model

TEXTS = ["a good movie", "awful and boring", "今天很好"]


def _tenant_id(api, key: str) -> str:
    from tuneforge.store.tenants import authenticate

    with api.sessions() as s:
        return authenticate(s, key).tenant_id


def _predict(client, model: str):
    r = client.post("/v1/predict", json={"model": model, "inputs": TEXTS})
    assert r.status_code == 200, r.text
    return r.json()["model"], [(p["label"], p["score"]) for p in r.json()["data"]]


def test_promote_and_rollback_switch_predictions_at_once(api, tiny_bert):
    _, key = api.tenant()
    acme = api.as_(key)
    tenant = _tenant_id(api, key)
    m1 = install_model(api.app, key, tiny_bert, name="one", seed=1, noise=0.3)
    m2 = install_model(api.app, key, tiny_bert, name="two", seed=2, noise=0.3)
    direct1, direct2 = _predict(acme, m1)[1], _predict(acme, m2)[1]
    assert direct1 != direct2

    r = acme.post("/v1/registry/sst/versions", json={"model": m1, "alias": "production", "reason": "first"})
    assert r.status_code == 201, r.text
    assert (r.json()["version"], r.json()["aliases"], r.json()["source"]) == (1, ["production"], m1)
    r = acme.post("/v1/registry/sst/versions", json={"model": m2})
    assert r.status_code == 201 and r.json()["version"] == 2 and r.json()["aliases"] == []

    assert _predict(acme, "sst") == ("sst@1", direct1)
    assert _predict(acme, "sst@production") == ("sst@1", direct1)
    assert _predict(acme, "sst@2") == ("sst@2", direct2)

    r = acme.put("/v1/registry/sst/aliases/production", json={"version": 2, "reason": "better on tweets"})
    assert r.status_code == 200 and r.json()["aliases"] == ["production"]
    assert _predict(acme, "sst") == ("sst@2", direct2)  # the very next request
    # each version is its own entry in the model cache: requests still running on version 1 keep their model
    loaded = api.app.state.tuneforge.inference.cache.keys()
    assert {k for k in loaded if k.endswith(("sst@1", "sst@2"))} == {f"predict:{tenant}:sst@1",
                                                                     f"predict:{tenant}:sst@2"}

    r = acme.post("/v1/registry/sst/rollback", json={"reason": "regression"})
    assert r.status_code == 200 and r.json()["version"] == 1
    assert _predict(acme, "sst@production") == ("sst@1", direct1)  # exactly the old predictions

    assert acme.post("/v1/embeddings", json={"model": "sst@2", "input": "hello"}).status_code == 200
    chat = acme.post("/v1/chat/completions", json={"model": "sst", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 400 and "not a chat model" in chat.json()["error"]["message"]

    missing = acme.post("/v1/predict", json={"model": "sst@candidate", "inputs": TEXTS})
    assert missing.status_code == 404 and "no alias 'candidate'" in missing.json()["error"]["message"]
    assert acme.delete("/v1/registry/sst/versions/1").status_code == 409
    assert acme.delete("/v1/registry/sst/versions/2").status_code == 200
    assert acme.post("/v1/predict", json={"model": "sst@2", "inputs": TEXTS}).status_code == 404

    versions = acme.get("/v1/registry/sst/versions").json()["data"]
    assert [v["version"] for v in versions] == [1]
    events = acme.get("/v1/registry/sst/history").json()["data"]
    assert [e["action"] for e in events] == ["register", "set_alias", "register", "set_alias", "rollback", "delete"]
    assert events[3]["reason"] == "better on tweets" and events[3]["previous"] == 1
    assert all(e["actor"] for e in events)
    assert acme.get("/v1/registry").json()["data"][0]["aliases"] == {"production": 1}


def test_another_tenants_names_are_not_found(api, tiny_bert):
    _, key = api.tenant()
    acme = api.as_(key)
    m1 = install_model(api.app, key, tiny_bert, name="one", seed=1)
    assert acme.post("/v1/registry/sst/versions", json={"model": m1, "alias": "production"}).status_code == 201
    _, other_key = api.tenant()
    globex = api.as_(other_key)
    for r in (globex.get("/v1/registry/sst"), globex.get("/v1/registry/sst/versions/1"),
              globex.get("/v1/registry/sst/history"),
              globex.put("/v1/registry/sst/aliases/production", json={"version": 1}),
              globex.post("/v1/registry/sst/rollback", json={}),
              globex.delete("/v1/registry/sst/versions/1"),
              globex.post("/v1/registry/sst/versions", json={"model": m1}),  # acme's model
              globex.post("/v1/predict", json={"model": "sst@1", "inputs": TEXTS})):
        assert r.status_code == 404, r.text
    assert globex.get("/v1/registry").json()["data"] == []
    clash = acme.post("/v1/registry/tiny-bert/versions", json={"model": m1})  # a base model's name stays its own
    assert clash.status_code == 400 and clash.json()["error"]["param"] == "name"
    # globex's own "sst" is its own: plain "sst" is then globex's production, not acme's
    g1 = install_model(api.app, other_key, tiny_bert, name="g", seed=5, noise=0.3)
    assert globex.post("/v1/registry/sst/versions", json={"model": g1, "alias": "production"}).status_code == 201
    assert _predict(globex, "sst")[1] == _predict(globex, g1)[1]
    assert _predict(acme, "sst")[1] == _predict(acme, m1)[1]
