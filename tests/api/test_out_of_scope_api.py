"""/v1/predict with a model that has a reject option: a rejected input comes back with the out-of-scope label,
``rejected: true`` and its best known label and calibrated score; an accepted one with ``rejected: false``; a model
without a reject option answers with the keys it always had."""

from __future__ import annotations

import numpy as np
import pytest

from tests.service_support import install_model
from tuneforge import runs
from tuneforge.store.models import Model

TEXTS = ["a good movie", "paris is the capital of france"]


def _with_policy(api, model_id: str, **policy) -> None:
    """Give an installed model a fitted policy, as `train --oos-label ... --reject` writes it."""
    with api.app.state.tuneforge.sessions() as s:
        folder = api.app.state.tuneforge.storage.local_path(s.get(Model, model_id).storage_key)
    manifest = runs.read_manifest(folder)
    manifest["confidence"] = {"oos_label": "out_of_scope", "temperature": 1.0, "calibrated": False,
                              "target": 0.95, "dev": {}, **policy}
    runs.write_manifest(folder, manifest)


def _predict(client, model_id):
    r = client.post("/v1/predict", json={"model": model_id, "inputs": TEXTS})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_a_rejected_input_gets_the_out_of_scope_label_and_keeps_its_best_label(api, tiny_bert):
    _, key = api.tenant()
    client = api.as_(key)
    plain = install_model(api.app, key, tiny_bert, name="plain", seed=3)
    strict = install_model(api.app, key, tiny_bert, name="strict", seed=3)
    lenient = install_model(api.app, key, tiny_bert, name="lenient", seed=3)
    calibrated = install_model(api.app, key, tiny_bert, name="calibrated", seed=3)
    # an untrained two-class head is never sure: msp below 0.99 everywhere, above 0 always
    _with_policy(api, strict, reject="msp", thresholds={"msp": 0.99, "energy": 0.0})
    _with_policy(api, lenient, reject="msp", thresholds={"msp": 0.0, "energy": 0.0})
    _with_policy(api, calibrated, reject="none", temperature=0.1, calibrated=True, thresholds={})

    before = _predict(client, plain)
    assert all(set(p) == {"index", "label", "score", "scores"} for p in before)
    for p, q in zip(_predict(client, strict), before, strict=True):
        assert p["rejected"] is True and p["label"] == "out_of_scope"
        assert p["best_label"] == q["label"] and p["score"] == pytest.approx(q["score"], abs=1e-6)
        assert "ood" not in p
    for p, q in zip(_predict(client, lenient), before, strict=True):
        assert p["rejected"] is False and p["label"] == q["label"] and "best_label" not in p
    for p, q in zip(_predict(client, calibrated), before, strict=True):  # calibration only: sharper scores
        assert set(p) == set(q) and p["label"] == q["label"]
        logit_gap = np.log(q["score"] / (1 - q["score"]))
        assert p["score"] == pytest.approx(1 / (1 + np.exp(-logit_gap / 0.1)), abs=1e-4)

    other = api.as_(api.tenant()[1])  # another tenant's model reads like a missing one
    assert other.post("/v1/predict", json={"model": strict, "inputs": TEXTS}).status_code == 404
