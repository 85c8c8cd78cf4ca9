"""`/v1/models/{id}` shows what serves a model once it is loaded: the service's backend (here ONNX Runtime, set by
TUNEFORGE_BACKEND / `serve --backend`), with its threads; before the first request it shows none."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from tests.api.conftest import running_api  # noqa: E402
from tests.api.test_import_model import QUIET, _upload  # noqa: E402
from tests.conftest import write_jsonl  # noqa: E402
from tuneforge.training import make_config, train  # noqa: E402


@pytest.fixture(scope="module")
def full_run(tiny_bert, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("backend-run")
    rows = [{"text": t, "label": "yes" if i % 2 else "no"} for i, t in
            enumerate(["a good movie", "awful", "i love it", "boring film", "great fun", "bad"] * 2)]
    cfg = make_config({"task": "classification", "data": str(write_jsonl(root / "train.jsonl", rows)),
                       "base_model": str(tiny_bert), "output": str(root / "run"), "epochs": 1, "batch_size": 4,
                       "precision": "fp32", "method": "full", "max_length": 32})
    return train(cfg, console=QUIET).output


def test_the_model_shows_the_backend_that_serves_it(settings, full_run):
    with running_api(settings.model_copy(update={"backend": "onnx"})) as api:
        acme = api.as_(api.tenant()[1])
        assert _upload(acme, full_run, "mine").status_code == 200
        assert acme.get("/v1/models/mine").json()["backend"] is None  # not loaded yet
        r = acme.post("/v1/predict", json={"model": "mine", "inputs": ["a good movie", "bad"]})
        assert r.status_code == 200, r.text
        assert {d["label"] for d in r.json()["data"]} <= {"yes", "no"}
        shown = acme.get("/v1/models/mine").json()["backend"]
        assert shown["backend"] == "onnx" and shown["file"] == "model.onnx" and shown["intra_op_threads"] >= 1
