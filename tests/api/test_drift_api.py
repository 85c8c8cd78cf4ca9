"""Live-input monitoring through the API: logging is opt-in per model, sampled, pruned past the retention limit,
PII-masked when asked, scoped to the tenant (another tenant's model is a 404); ``GET .../drift`` reports on the
last logged inputs against the training data and, over the threshold, records an alert and POSTs it to a webhook
(a local receiver here)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.api.conftest import running_api
from tests.conftest import write_jsonl
from tests.service_support import install_model, make_settings
from tuneforge import runs
from tuneforge.store.input_log import DriftAlertRepo, InputLogRepo
from tuneforge.store.models import Model
from tuneforge.store.tenants import authenticate

MOVIE = ["the", "movie", "film", "was", "good", "great", "bad", "awful", "fun", "boring", "very", "not", "a"]
OTHER = ["refund", "order", "delivery", "package", "password", "account", "cancel", "help", "please", "жд"]


def _texts(words: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 9))) for _ in range(n)]


@pytest.fixture
def api(db_url, tmp_path, tiny_bert):
    settings = make_settings(tmp_path / "data", db_url, base_models={"tiny-bert": tiny_bert},
                             allow_private_urls=True)  # the webhook receiver listens on 127.0.0.1
    with running_api(settings) as a:
        yield a


def _model(api, key: str, tiny_bert: Path, tmp_path: Path, name: str = "m") -> str:
    """A tenant's classifier whose manifest names a training file of movie phrases."""
    model_id = install_model(api.app, key, tiny_bert, name=name, noise=0.05)
    state = api.app.state.tuneforge
    with state.sessions() as s:
        folder = state.storage.local_path(s.get(Model, model_id).storage_key)
    train = write_jsonl(tmp_path / f"{name}-train.jsonl",
                        [{"text": t, "label": "positive"} for t in _texts(MOVIE, 100, 0)])
    manifest = runs.read_manifest(folder)
    manifest["data"] = {"train": {"path": str(train), "examples": 100}}
    runs.write_manifest(folder, manifest)
    return model_id


def _tenant_id(api, key: str) -> str:
    with api.sessions() as s:
        return authenticate(s, key).tenant_id


def _logged(api, key: str, model_id: str) -> list:
    with api.sessions() as s:
        return [(r.input, r.prediction) for r in InputLogRepo(s, _tenant_id(api, key)).window(model_id, 10_000)]


def test_logging_is_opt_in_sampled_pruned_and_tenant_scoped(api, tiny_bert, tmp_path):
    _, ka = api.tenant()
    _, kb = api.tenant()
    a, b = api.as_(ka), api.as_(kb)
    model_id = _model(api, ka, tiny_bert, tmp_path)
    url = f"/v1/models/{model_id}/monitoring"

    assert a.post("/v1/predict", json={"model": model_id, "inputs": ["a good movie"]}).status_code == 200
    assert _logged(api, ka, model_id) == []  # not monitored: nothing kept
    assert a.get(url).json()["enabled"] is False

    r = a.post(url, json={"sample_rate": 1.0, "retention": 10})
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is True and r.json()["mask_pii"] is False  # the model was not trained masked
    texts = [f"movie number {i}" for i in range(25)]
    resp = a.post("/v1/predict", json={"model": model_id, "inputs": texts})
    assert resp.status_code == 200
    logged = _logged(api, ka, model_id)
    assert [x for x, _ in logged] == texts[-10:]  # pruned to the newest 10
    assert [p for _, p in logged] == [{k: v for k, v in d.items() if k != "index"} for d in resp.json()["data"][-10:]]
    assert a.get(url).json()["logged"] == 10

    a.post(url, json={"sample_rate": 0.5, "retention": 100_000})
    a.post("/v1/predict", json={"model": model_id, "inputs": [f"film {i}" for i in range(200)]})
    assert 50 < len(_logged(api, ka, model_id)) - 10 < 150  # about half of the 200 (P(outside) < 1e-12)

    # another tenant: a 404 for the model, and its own predictions are not logged under it
    for call in (b.get(url), b.post(url, json={}), b.get(f"/v1/models/{model_id}/drift"), b.delete(url)):
        assert call.status_code == 404, call.text
    assert a.delete(url).json()["logged"] == 0 and _logged(api, ka, model_id) == []
    assert a.post("/v1/predict", json={"model": model_id, "inputs": ["after"]}).status_code == 200
    assert _logged(api, ka, model_id) == []


def test_logged_text_is_pii_masked_when_masking_is_on(api, tiny_bert, tmp_path):
    _, ka = api.tenant()
    a = api.as_(ka)
    model_id = _model(api, ka, tiny_bert, tmp_path)
    assert a.post(f"/v1/models/{model_id}/monitoring", json={"mask_pii": True}).json()["mask_pii"] is True
    a.post("/v1/predict", json={"model": model_id, "inputs": ["mail me at jane.doe@example.com please"]})
    [(text, _)] = _logged(api, ka, model_id)
    assert text == "mail me at <EMAIL> please"


def test_a_failing_input_log_never_fails_the_prediction(api, tiny_bert, tmp_path, monkeypatch):
    import tuneforge.api.routers.drift as drift_routes

    def broken(*args, **kwargs):
        raise RuntimeError("the database is down")

    _, ka = api.tenant()
    a = api.as_(ka)
    model_id = _model(api, ka, tiny_bert, tmp_path)
    a.post(f"/v1/models/{model_id}/monitoring", json={})
    monkeypatch.setattr(drift_routes, "log_inputs", broken)
    r = a.post("/v1/predict", json={"model": model_id, "inputs": ["a good movie"]})
    assert r.status_code == 200 and r.json()["data"][0]["label"] in ("negative", "positive")
    assert _logged(api, ka, model_id) == []


def test_a_registry_name_is_monitored_across_its_versions(api, tiny_bert, tmp_path):
    """Monitoring ``sst`` keys the log by the name: a promotion keeps logging (each row says which version
    answered), and the drift of ``sst@production`` is reported on the version the alias points at."""
    _, ka = api.tenant()
    a = api.as_(ka)
    m1, m2 = _model(api, ka, tiny_bert, tmp_path, "one"), _model(api, ka, tiny_bert, tmp_path, "two")
    assert a.post("/v1/registry/sst/versions", json={"model": m1, "alias": "production"}).status_code == 201
    assert a.post("/v1/registry/sst/versions", json={"model": m2}).status_code == 201
    r = a.post("/v1/models/sst@production/monitoring", json={})
    assert r.status_code == 200 and r.json()["model"] == "sst"
    a.post("/v1/predict", json={"model": "sst", "inputs": _texts(MOVIE, 10, 1)})
    assert a.put("/v1/registry/sst/aliases/production", json={"version": 2}).status_code == 200
    a.post("/v1/predict", json={"model": "sst", "inputs": _texts(MOVIE, 10, 2)})
    with api.sessions() as s:
        rows = InputLogRepo(s, _tenant_id(api, ka)).window("sst", 100)
        assert [r.served_by for r in rows] == ["sst@1"] * 10 + ["sst@2"] * 10
    report = a.get("/v1/models/sst@production/drift", params={"window": 20})
    assert report.status_code == 200, report.text
    assert report.json()["model"] == "sst" and report.json()["drift"] is False


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        self.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    bodies: list[dict] = []
    handler = type("Handler", (_Receiver,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_drift_report_raises_an_alert_to_the_webhook(api, tiny_bert, tmp_path, receiver):
    hook, bodies = receiver
    _, ka = api.tenant()
    a = api.as_(ka)
    model_id = _model(api, ka, tiny_bert, tmp_path)
    assert a.post(f"/v1/models/{model_id}/monitoring",
                  json={"webhook_url": hook, "webhook_secret": "s3cret"}).status_code == 200
    drift = f"/v1/models/{model_id}/drift"
    assert a.get(drift).status_code == 400  # nothing logged yet: too few inputs, said so

    a.post("/v1/predict", json={"model": model_id, "inputs": _texts(MOVIE, 40, 7)})
    r = a.get(drift, params={"window": 40})
    assert r.status_code == 200, r.text
    same = r.json()
    assert same["drift"] is False and same["alert"] is None and same["window"] == 40 and bodies == []

    a.post("/v1/predict", json={"model": model_id, "inputs": _texts(OTHER, 40, 8)})
    shifted = a.get(drift, params={"window": 40}).json()
    assert shifted["drift"] is True and shifted["score"] > shifted["threshold"] == 0.6
    assert shifted["method"] == "domain_classifier_auc" and shifted["alert"]["id"].startswith("driftalert-")
    assert len(bodies) == 1 and bodies[0]["type"] == "drift.alert" and bodies[0]["model"] == model_id
    assert bodies[0]["alert_id"] == shifted["alert"]["id"] and bodies[0]["score"] == shifted["score"]
    with api.sessions() as s:
        [alert] = DriftAlertRepo(s, _tenant_id(api, ka)).list().data
        assert alert.deliveries[0]["ok"] is True and alert.window == 40
    alerts = a.get(f"{drift}/alerts").json()["data"]
    assert [x["id"] for x in alerts] == [shifted["alert"]["id"]]
    # within the cooldown (60 minutes by default) the next drifting report refers to that alert: no new webhook
    again = a.get(drift, params={"window": 40}).json()
    assert again["drift"] is True and again["alert"]["id"] == shifted["alert"]["id"] and len(bodies) == 1

    # a per-model threshold above the score: the same window is no alert
    a.post(f"/v1/models/{model_id}/monitoring", json={"threshold": 1.0, "webhook_url": hook})
    assert a.get(drift, params={"window": 40}).json()["drift"] is False and len(bodies) == 1
