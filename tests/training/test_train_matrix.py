"""Every task on the tiny in-process BERT: training gives a finite loss, the saved folder reloads to the same
outputs as the in-memory model, and predictions have the documented shape."""

from __future__ import annotations

import json
import math

import pytest
from rich.console import Console

from tests.conftest import write_jsonl
from tuneforge.inference import load_predictor
from tuneforge.training import make_config, train

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115


def _train(tmp_path, tiny_bert, task, rows, **extra):
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    dev = write_jsonl(tmp_path / "dev.jsonl", rows[: max(4, len(rows) // 2)])
    cfg = make_config({"task": task, "data": str(data), "eval_data": str(dev), "base_model": str(tiny_bert),
                       "output": str(tmp_path / "run"), "epochs": 2, "batch_size": 4, "learning_rate": 1e-3,
                       "precision": "fp32", **extra})
    return train(cfg, console=QUIET), dev


def _saved_predictions(run):
    folder = next(run.glob("eval-*"))
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("case", ["single", "multi", "pair"])
def test_classification(tmp_path, tiny_bert, cls_rows, case):
    rows = cls_rows
    if case == "multi":
        rows = [{"text": r["text"], "label": [r["label"], "film"] if "film" in r["text"] else [r["label"]]}
                for r in cls_rows]
    if case == "pair":
        rows = [{"text": r["text"], "text_pair": "is it good?", "label": r["label"]} for r in cls_rows]
    result, dev = _train(tmp_path, tiny_bert, "classification", rows)
    man = result.manifest
    assert math.isfinite(man["training"]["final_loss"])
    assert man["multi_label"] is (case == "multi")
    assert man["data"]["train"]["sha256"].startswith("sha256:")
    assert (result.output / "model.safetensors").exists() and not (result.output / "checkpoints").exists()
    assert not (result.output / "run-config.json").exists()
    metrics = json.loads(next(result.output.glob("eval-*/metrics.json")).read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and "macro_f1" in metrics
    # save -> load gives the predictions the in-memory model made during training
    predictor = load_predictor(result.output)
    from tuneforge.tasks import load_dataset

    ds = load_dataset(dev, "classification")
    preds = predictor.predict_examples(ds.examples)
    for saved, new in zip(_saved_predictions(result.output), preds, strict=True):
        for label, score in new["scores"].items():
            assert abs(saved["scores"][label] - score) < 1e-4
    out = predictor.predict(["a good film"])[0]
    if case == "multi":
        assert set(out) == {"labels", "scores"} and set(out["scores"]) == {"film", "negative", "positive"}
    else:
        assert out["label"] in {"negative", "positive"} and 0 <= out["score"] <= 1


def test_ner(tmp_path, tiny_bert, ner_rows):
    result, dev = _train(tmp_path, tiny_bert, "ner", ner_rows)
    assert math.isfinite(result.manifest["training"]["final_loss"])
    metrics = json.loads(next(result.output.glob("eval-*/metrics.json")).read_text())
    assert {"precision", "recall", "f1"} <= set(metrics)
    predictor = load_predictor(result.output)
    from tuneforge.tasks import load_dataset

    ds = load_dataset(dev, "ner")
    preds = predictor.predict_examples(ds.examples)
    assert [p["tags"] for p in preds] == [s["tags"] for s in _saved_predictions(result.output)]
    out = predictor.predict(["john lives in paris", "张三在北京"])
    for text, p in zip(["john lives in paris", "张三在北京"], out, strict=True):
        for e in p["entities"]:
            assert text[e["start"]:e["end"]] == e["text"] and e["type"] in {"PER", "LOC", "ORG"}


def test_qa(tmp_path, tiny_bert, qa_rows):
    result, dev = _train(tmp_path, tiny_bert, "qa", qa_rows, max_length=48, stride=16)
    assert math.isfinite(result.manifest["training"]["final_loss"])
    metrics = json.loads(next(result.output.glob("eval-*/metrics.json")).read_text())
    assert 0 <= metrics["exact_match"] <= 100 and 0 <= metrics["f1"] <= 100
    predictor = load_predictor(result.output)
    from tuneforge.tasks import load_dataset

    ds = load_dataset(dev, "qa")
    preds = predictor.predict_examples(ds.examples)
    assert [p["answer"] for p in preds] == [s["answer"] for s in _saved_predictions(result.output)]
    ctx = qa_rows[0]["context"]
    p = predictor.predict([{"question": "what is the capital of france?", "context": ctx}])[0]
    assert ctx[p["start"]:p["end"]] == p["answer"] and p["answer"]


def test_saved_folder_loads_in_transformers_pipeline(tmp_path, tiny_bert, cls_rows):
    from transformers import pipeline

    result, _ = _train(tmp_path, tiny_bert, "classification", cls_rows)
    clf = pipeline("text-classification", model=str(result.output))
    out = clf("a good film")[0]
    ours = load_predictor(result.output).predict(["a good film"])[0]
    assert out["label"] == ours["label"] and abs(out["score"] - ours["score"]) < 1e-4
