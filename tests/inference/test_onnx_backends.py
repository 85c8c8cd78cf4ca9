"""The inference backends beside torch: ONNX fp32 / int8 serve a run folder through its export (made in RUN/onnx
on first load, reused while the weights are the same), ``auto`` measures its candidates at load and records its
choice, per-model overrides route models to other backends, and ``predict`` / ``evaluate --backend`` run the
same backends from the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from tests.inference.test_onnx_export import make_run, rows, write_jsonl  # noqa: E402
from tuneforge.cli import main  # noqa: E402
from tuneforge.errors import ConfigError  # noqa: E402
from tuneforge.inference import load_predictor  # noqa: E402
from tuneforge.inference.backends import backend_names, get_backend, load_run_predictor  # noqa: E402
from tuneforge.inference.backends.auto import AutoBackend  # noqa: E402
from tuneforge.inference.backends.onnx_runtime import CACHE_FOLDER, OnnxPredictor, inference_threads  # noqa: E402
from tuneforge.inference.backends.routed import make_backend  # noqa: E402
from tuneforge.inference.serving import InferenceService  # noqa: E402


@pytest.fixture(scope="module")
def run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"), tiny_bert, "classification")


def test_the_backends_are_registered_and_unknown_names_refused():
    assert {"torch", "torch-bf16", "onnx", "onnx-int8", "auto"} <= set(backend_names())
    with pytest.raises(ConfigError, match=r"unknown inference backend 'tensorrt'.*onnx-int8"):
        get_backend("tensorrt")
    with pytest.raises(ConfigError, match="tensorrt"):
        make_backend("torch", {"some-run": "tensorrt"})


def test_torch_bf16_is_refused_where_the_cpu_lacks_it(monkeypatch):
    from tuneforge.inference.backends import torch as torch_backend

    monkeypatch.setattr(torch_backend, "bf16_supported", lambda: False)
    with pytest.raises(ConfigError, match="bfloat16 instructions") as e:
        get_backend("torch-bf16")
    assert "onnx" in (e.value.hint or "")


def test_a_run_is_exported_on_first_load_and_the_export_reused(run, monkeypatch):
    from tuneforge.inference.backends import onnx_export

    served = get_backend("onnx").load_predictor(run)
    assert (run / CACHE_FOLDER / "model.onnx").is_file() and (run / CACHE_FOLDER / "model_int8.onnx").is_file()
    info = served.backend_info  # type: ignore[attr-defined]
    assert info["backend"] == "onnx" and info["intra_op_threads"] == inference_threads()
    texts = ["the movie was good", "bad and boring", "paris"]
    torch_p = load_predictor(run)
    got, want = served.run(served.prepare(texts)), torch_p.predict(texts)
    assert [p["label"] for p in got] == [p["label"] for p in want]
    assert all(abs(g["score"] - w["score"]) < 1e-4 for g, w in zip(got, want, strict=True))
    items = served.prepare(texts)
    assert served.count_tokens(items) == torch_p.task.count_tokens(items, torch_p.tokenizer, 64)

    def no_export(*a, **k):
        raise AssertionError("the export of unchanged weights is reused")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    again = get_backend("onnx-int8").load_predictor(run)
    assert again.backend_info["file"] == "model_int8.onnx"  # type: ignore[attr-defined]
    # new weights (same size, another time and digest): the export is stale and made again
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="reused"):
        get_backend("onnx").load_predictor(run)
    data[-1] ^= 1
    weights.write_bytes(bytes(data))


def test_auto_measures_its_candidates_and_records_its_choice(run):
    loaded = AutoBackend(candidates=["torch", "onnx", "onnx-int8"]).load_predictor(run)
    info = loaded.backend_info  # type: ignore[attr-defined]
    assert info["chosen_by"] == "auto" and info["backend"] in ("torch", "onnx", "onnx-int8")
    assert set(info["candidates"]) == {"torch", "onnx", "onnx-int8"}
    assert all(c["examples_per_s"] > 0 for c in info["candidates"].values())
    assert info["candidates"]["onnx"]["agreement"] == 1.0
    chosen = info["candidates"][info["backend"]]
    assert chosen["agrees"] and chosen["examples_per_s"] == max(
        c["examples_per_s"] for c in info["candidates"].values() if c["agrees"])
    assert loaded.run(loaded.prepare(["the movie was good"]))[0]["label"] in ("negative", "positive")


def test_auto_serves_with_torch_what_onnx_cannot_load(run, tmp_path):
    class Broken:
        def load_predictor(self, path):
            raise ConfigError("not for this model")

    def make(name):
        return Broken() if name == "onnx" else get_backend(name)

    loaded = AutoBackend(candidates=["torch", "onnx"], make=make).load_predictor(run)
    info = loaded.backend_info  # type: ignore[attr-defined]
    assert info["backend"] == "torch" and "not for this model" in info["candidates"]["onnx"]["error"]


def test_a_model_backend_override_routes_one_model(run):
    backend = make_backend("torch", {run.name: "onnx"})
    svc = InferenceService(capacity_bytes=10**9, backend=backend)
    try:
        preds, tokens = svc.predict("m", run, ["the movie was good"])
        assert preds[0]["label"] in ("negative", "positive") and tokens > 0
        info = backend.info(run)  # type: ignore[attr-defined]
        assert info["backend"] == "onnx" and info["override"] == run.name
    finally:
        svc.close()


def test_predict_and_evaluate_take_a_backend(run, tmp_path):
    data = write_jsonl(tmp_path / "val.jsonl", rows("classification", 20, seed=3))
    for backend in ("torch", "onnx"):
        assert main(["predict", str(run), "--data", str(data), "--backend", backend, "-o",
                     str(tmp_path / f"{backend}.jsonl")]) == 0
        assert main(["evaluate", str(run), "--data", str(data), "--backend", backend, "--name", backend]) == 0
    torch_preds, onnx_preds = ([json.loads(x)["label"] for x in (tmp_path / f"{b}.jsonl").open()]
                               for b in ("torch", "onnx"))
    assert torch_preds == onnx_preds and len(torch_preds) == 20
    acc = [json.loads((run / f"eval-{b}" / "metrics.json").read_text())["accuracy"] for b in ("torch", "onnx")]
    assert acc[0] == acc[1]
    assert main(["predict", str(run), "the movie", "--backend", "tensorrt"]) == 2


def test_export_writes_an_onnx_folder_that_predict_loads(run, tmp_path, capsys):
    data = write_jsonl(tmp_path / "val.jsonl", rows("classification", 16, seed=4))
    out = tmp_path / "exported"
    assert main(["export", str(run), "--format", "onnx", "--quantize", "int8", "--check-data", str(data),
                 "-o", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "fp32: ok" in shown and "int8:" in shown and "points" in shown
    assert isinstance(load_run_predictor(out, "onnx"), OnnxPredictor)
    assert main(["predict", str(out), "the movie was good"]) == 0  # an export folder defaults to onnx
    assert main(["export", str(run), "--format", "onnx", "-o", str(out)]) == 2  # exists: --overwrite
    assert main(["export", str(run), "--quantize", "int8", "-o", str(tmp_path / "m")]) == 2  # onnx-only option
    assert not (tmp_path / "m").exists()
    assert os.listdir(out)  # still the first export


def test_auto_chooses_an_embedder_for_a_runs_encoder(run):
    import numpy as np

    loaded = AutoBackend(candidates=["torch", "onnx"]).load_embedder(run)
    info = loaded.backend_info  # type: ignore[attr-defined]
    assert info["candidates"]["onnx"]["agrees"] and info["candidates"]["onnx"]["agreement"] == 1.0
    assert (run / "onnx-embeddings" / "model.onnx").is_file()
    vectors = loaded.run(loaded.prepare(["the movie was good", "paris"]))
    assert np.allclose([np.linalg.norm(v) for v in vectors], 1.0, atol=1e-5)
