"""``"explain": true`` on /v1/predict: each prediction comes back with its explanation (the predicted or requested
label's word attributions, complete up to the convergence delta; NER: one per entity); more than 8 inputs, an
unknown label, explain_label without explain and a QA model are a clear 400; another tenant's model is a 404."""

from __future__ import annotations

import pytest

from tests.service_support import install_model


def test_explain_true_returns_each_predictions_attributions(api, tiny_bert):
    _, key = api.tenant()
    client = api.as_(key)
    model = install_model(api.app, key, tiny_bert, name="cls", seed=3, noise=0.05)
    texts = ["a good movie", "今天很好"]
    plain = client.post("/v1/predict", json={"model": model, "inputs": texts})
    assert plain.status_code == 200 and all("explanation" not in p for p in plain.json()["data"])
    r = client.post("/v1/predict", json={"model": model, "inputs": texts, "explain": True})
    assert r.status_code == 200, r.text
    for row, before, text in zip(r.json()["data"], plain.json()["data"], texts, strict=True):
        e = row["explanation"]
        assert set(e) == {"label", "score", "attributions", "convergence_delta"}
        assert e["label"] == before["label"] and e["score"] == pytest.approx(before["score"], abs=1e-5)
        assert [text[a["start"]:a["end"]] for a in e["attributions"]] == [a["token"] for a in e["attributions"]]
        assert abs(e["convergence_delta"]) < 0.05
        assert any(a["score"] != 0 for a in e["attributions"])
    assert [a["token"] for a in r.json()["data"][1]["explanation"]["attributions"]] == list("今天很好")
    other = client.post("/v1/predict", json={"model": model, "inputs": texts[:1], "explain": True,
                                             "explain_label": "negative"}).json()["data"][0]["explanation"]
    assert other["label"] == "negative"

    too_many = client.post("/v1/predict", json={"model": model, "inputs": ["a good movie"] * 9, "explain": True})
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "too_many_inputs"
    assert "at most 8" in too_many.json()["error"]["message"]
    assert client.post("/v1/predict", json={"model": model, "inputs": ["a good movie"] * 9}).status_code == 200
    bad = client.post("/v1/predict", json={"model": model, "inputs": texts, "explain": True, "explain_label": "meh"})
    assert bad.status_code == 400 and "not a label" in bad.json()["error"]["message"]
    lonely = client.post("/v1/predict", json={"model": model, "inputs": texts, "explain_label": "negative"})
    assert lonely.status_code == 400 and lonely.json()["error"]["param"] == "explain_label"

    globex = api.as_(api.tenant()[1])  # another tenant's model reads like a missing one
    r = globex.post("/v1/predict", json={"model": model, "inputs": texts, "explain": True})
    assert r.status_code == 404


def test_ner_and_qa_models(api, tiny_bert):
    _, key = api.tenant()
    client = api.as_(key)
    ner = install_model(api.app, key, tiny_bert, "ner", name="ner", seed=2, noise=0.05)
    r = client.post("/v1/predict", json={"model": ner, "inputs": ["john lives in paris"], "explain": True})
    assert r.status_code == 200, r.text
    row = r.json()["data"][0]
    assert row["entities"], "the tiny head predicts some entities"
    assert isinstance(row["explanation"], list) and len(row["explanation"]) == len(row["entities"])
    for e, ent in zip(row["explanation"], row["entities"], strict=True):
        assert (e["label"], e["start"], e["end"]) == (ent["type"], ent["start"], ent["end"])
        assert [a["token"] for a in e["attributions"]] == ["john", "lives", "in", "paris"]
    qa = install_model(api.app, key, tiny_bert, "qa", name="qa")
    r = client.post("/v1/predict", json={"model": qa, "inputs": [{"question": "who?", "context": "john"}],
                                         "explain": True})
    assert r.status_code == 400 and "classification and NER" in r.json()["error"]["message"]
