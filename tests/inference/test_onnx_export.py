"""ONNX export of tiny in-process runs: for every encoder task (classification single- and multi-label, sentence
pairs, NER, QA) and for embeddings, the exported model predicts what the torch model predicts, through the same
task decoding; an export whose int8 model loses accuracy is refused (and nothing is written) unless forced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from tuneforge import runs  # noqa: E402
from tuneforge.errors import ConfigError  # noqa: E402
from tuneforge.inference import load_predictor  # noqa: E402
from tuneforge.inference.backends.onnx import load_onnx  # noqa: E402
from tuneforge.inference.backends.onnx_export import export_onnx  # noqa: E402
from tuneforge.inference.backends.onnx_runtime import EXPORT_MANIFEST, OnnxEmbedder, OnnxPredictor  # noqa: E402
from tuneforge.tasks import get_task  # noqa: E402

LABELS = {"classification": ["negative", "positive"], "ner": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
          "qa": ["start", "end"], "multi": ["billing", "delivery", "account"]}
WORDS = ["the", "movie", "film", "good", "great", "bad", "awful", "love", "hate", "fun", "boring", "not", "very",
         "john", "mary", "paris", "london"]


def make_run(tmp: Path, base: Path, task_name: str, *, multi_label: bool = False, seed: int = 0) -> Path:
    """A finished ``full`` run folder of ``task_name`` over the tiny BERT (a random head)."""
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    labels = LABELS["multi" if multi_label else task_name]
    model = get_task(task_name).build_model(base, labels, multi_label=multi_label)
    out = tmp / f"{task_name}{'-multi' if multi_label else ''}-{seed}"
    model.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    runs.write_manifest(out, {"name": out.name, "task": task_name, "labels": labels, "max_length": 64, "stride": 16,
                              "multi_label": multi_label, "method": "full",
                              "base_model": {"name": "tiny", "path": str(base)}})
    return out


def rows(task: str, n: int = 24, *, multi_label: bool = False, pairs: bool = False, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)

    def text(k: int) -> str:
        return " ".join(rng.choice(WORDS, size=k))

    out: list[dict[str, Any]] = []
    for i in range(n):
        if task == "ner":
            tokens = list(rng.choice(WORDS, size=5))
            out.append({"tokens": tokens, "tags": ["B-PER" if t in ("john", "mary") else "B-LOC"
                                                   if t in ("paris", "london") else "O" for t in tokens]})
        elif task == "qa":
            context = f"{text(6)} john lives in paris {text(4)}"
            out.append({"question": "where does john live", "context": context,
                        "answers": {"text": ["paris"], "answer_start": [context.index("paris")]}})
        elif multi_label:
            out.append({"text": text(3 + i % 9), "label": [LABELS["multi"][i % 3]]})
        else:
            row: dict[str, Any] = {"text": text(3 + i % 9), "label": LABELS["classification"][i % 2]}
            if pairs:
                row["text_pair"] = text(4)
            out.append(row)
    return out


def write_jsonl(path: Path, data: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    return path


CASES = [("classification", False, False), ("classification", True, False), ("classification", False, True),
         ("ner", False, False), ("qa", False, False)]


@pytest.mark.parametrize(("task", "multi_label", "pairs"), CASES,
                         ids=["classification", "multi-label", "pairs", "ner", "qa"])
def test_the_export_predicts_what_torch_predicts(tmp_path, tiny_bert, task, multi_label, pairs):
    run = make_run(tmp_path, tiny_bert, task, multi_label=multi_label)
    data = write_jsonl(tmp_path / "check.jsonl", rows(task, multi_label=multi_label, pairs=pairs))
    manifest = export_onnx(run, tmp_path / "onnx", quantize="int8", check_data=data)
    fp32 = manifest["parity"]["fp32"]
    assert fp32["passed"] and fp32["max_abs_diff"] < 1e-4 and fp32["agreement"] == 1.0
    assert fp32["delta_points"] == 0.0 and fp32["metric"] == get_task(task).main_metric
    assert "int8" in manifest["parity"] and (tmp_path / "onnx" / "model_int8.onnx").is_file()
    on_disk = json.loads((tmp_path / "onnx" / EXPORT_MANIFEST).read_text())
    assert on_disk["parity"] == manifest["parity"] and on_disk["source"]["run"] == str(run.resolve())

    torch_p, onnx_p = load_predictor(run), load_onnx(tmp_path / "onnx", int8=False)
    assert isinstance(onnx_p, OnnxPredictor) and onnx_p.labels == torch_p.labels
    examples = torch_p.to_examples([{k: v for k, v in r.items() if k not in ("label", "tags", "answers")}
                                    if task != "ner" else " ".join(r["tokens"]) for r in rows(task, 7, pairs=pairs,
                                                                                            seed=5)])
    want, got = torch_p.predict_examples(examples), onnx_p.predict_examples(examples, batch_size=3)
    public = torch_p.task.public_prediction
    assert _close([public(p) for p in got], [public(p) for p in want])


def _close(a: Any, b: Any, tol: float = 1e-4) -> bool:
    """Equal predictions: the same labels, spans and answers, scores within ``tol``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol
    return bool(a == b)


def test_an_encoder_exports_for_embeddings(tmp_path, tiny_bert):
    from tuneforge.inference.embeddings import Embedder

    manifest = export_onnx(tiny_bert, tmp_path / "emb", quantize="int8", embeddings=True)
    assert manifest["kind"] == "embedding" and manifest["parity"]["fp32"]["min_cosine"] > 0.9999
    onnx_e = load_onnx(tmp_path / "emb", int8=False)
    assert isinstance(onnx_e, OnnxEmbedder)
    texts = ["the movie was good", "paris", "john lives in london and loves it"]
    got, want = onnx_e.embed(texts), Embedder(tiny_bert).embed(texts)
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-4)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert onnx_e.count_tokens(texts) == Embedder(tiny_bert).count_tokens(texts)


def _negating_quantizer(src: Path, dst: Path) -> None:
    """A broken int8 model: the fp32 graph with its logits negated (every prediction flips)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(src))
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["logits_raw" if o == "logits" else o for o in node.output]
    graph.node.append(helper.make_node("Neg", ["logits_raw"], ["logits"]))
    onnx.save(model, str(dst))


def test_an_export_that_loses_accuracy_is_refused_unless_forced(tmp_path, tiny_bert, monkeypatch):
    from tuneforge.inference.backends import onnx_export

    run = make_run(tmp_path, tiny_bert, "classification")
    # labels as the torch model predicts them: torch scores 100%, the broken int8 model 0%
    texts = [r["text"] for r in rows("classification", 30)]
    preds = load_predictor(run).predict(texts)
    data = write_jsonl(tmp_path / "check.jsonl", [{"text": t, "label": p["label"]} for t, p in
                                                  zip(texts, preds, strict=True)])
    monkeypatch.setattr(onnx_export, "_quantize_dynamic", _negating_quantizer)
    with pytest.raises(ConfigError) as e:
        export_onnx(run, tmp_path / "bad", quantize="int8", check_data=data)
    assert "refused" in e.value.message and "int8" in e.value.message and "--force" in (e.value.hint or "")
    assert not (tmp_path / "bad").exists()  # nothing half-written
    manifest = export_onnx(run, tmp_path / "forced", quantize="int8", check_data=data, force=True)
    assert manifest["forced"] and not manifest["parity"]["int8"]["passed"]
    assert manifest["parity"]["int8"]["delta_points"] <= -99.0
    assert load_onnx(tmp_path / "forced", int8=True).predict(texts[:1])[0]["label"] != preds[0]["label"]
    # kept with its failure recorded (a run's export on first load): the int8 model is refused at load
    export_onnx(run, tmp_path / "kept", quantize="int8", check_data=data, keep_failed=True)
    with pytest.raises(ConfigError, match="failed its parity check"):
        load_onnx(tmp_path / "kept", int8=True)
    assert load_onnx(tmp_path / "kept", int8=False).predict(texts[:1])[0]["label"] == preds[0]["label"]


def test_an_unknown_quantization_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown quantization"):
        export_onnx(tmp_path, tmp_path / "x", quantize="int4")


def test_static_int8_is_calibrated_on_the_check_data(tmp_path, tiny_bert):
    run = make_run(tmp_path, tiny_bert, "classification")
    data = write_jsonl(tmp_path / "check.jsonl", rows("classification", 16))
    manifest = export_onnx(run, tmp_path / "static", quantize="int8-static", check_data=data, force=True)
    assert manifest["quantization"] == "int8-static" and "agreement" in manifest["parity"]["int8"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "static" / "model_int8.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # QDQ static quantization
