"""Every task x method cell on the tiny in-process BERT: a couple of steps give a finite loss, save -> load gives
the outputs the in-memory model gave, and predictions have the documented shape."""

from __future__ import annotations

import json
import math

import pytest
from rich.console import Console

from tests.conftest import write_jsonl
from tuneforge.inference import load_predictor
from tuneforge.methods import get_method, method_names
from tuneforge.tasks import get_task, load_dataset
from tuneforge.training import make_config, train

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115
TASKS = ["classification", "ner", "qa"]
CELLS = [(m, t) for m in method_names() for t in TASKS if get_method(m).supports(get_task(t))]


def test_every_method_is_in_the_matrix():
    # dpo trains generation only, on preference pairs: tests/methods/test_dpo.py
    assert {m for m, _ in CELLS} | {"dpo"} == set(method_names()) >= {"full", "lora", "adalora", "ia3", "prompt_tuning",
                                                            "p_tuning", "adapter", "setfit", "zeroshot"}
    # virtual tokens shift per-token outputs, and the sentence methods give one label per text
    assert {m for m, t in CELLS if t == "ner"} == {"full", "lora", "adalora", "ia3", "adapter"}


def _rows(task, cls_rows, ner_rows, qa_rows):
    return {"classification": cls_rows, "ner": ner_rows, "qa": qa_rows}[task]


@pytest.mark.parametrize(("method", "task"), CELLS, ids=[f"{m}-{t}" for m, t in CELLS])
def test_cell(tmp_path, tiny_bert, cls_rows, ner_rows, qa_rows, method, task):
    rows = _rows(task, cls_rows, ner_rows, qa_rows)
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    dev = write_jsonl(tmp_path / "dev.jsonl", rows[:6])
    extra = {"max_length": 48, "stride": 16} if task == "qa" else {}
    if method in ("setfit", "zeroshot"):
        extra.update(sentence_encoder="base", setfit_iterations=1, batch_size=8)
    cfg = make_config({"task": task, "data": str(data), "eval_data": str(dev), "base_model": str(tiny_bert),
                       "output": str(tmp_path / "run"), "epochs": 1, "batch_size": 4, "learning_rate": 1e-3,
                       "precision": "fp32", "method": method, **extra})
    result = train(cfg, console=QUIET)
    man = result.manifest
    assert man["method"] == method
    loss = man["training"]["final_loss"]
    assert loss is None if get_method(method).own_loop and method == "zeroshot" else math.isfinite(loss or 0.0)
    tr = man["training"]
    assert tr["saved_bytes"] > 0
    if method == "zeroshot":  # label embeddings, nothing trained
        assert tr["trainable_parameters"] == 0 < tr["parameters"]
    else:
        assert 0 < tr["trainable_parameters"] <= tr["parameters"]
    if method not in ("full", "setfit", "zeroshot"):
        assert tr["trainable_parameters"] < tr["parameters"] * 0.9
    # save -> load gives the predictions made in memory during training
    predictor = load_predictor(result.output)
    ds = load_dataset(dev, task)
    new = predictor.predict_examples(ds.examples)
    saved = [json.loads(x) for x in next(result.output.glob("eval-*/predictions.jsonl")).read_text().splitlines()]
    if task == "classification":
        for s, n in zip(saved, new, strict=True):
            assert n["label"] in {"negative", "positive"} and 0 <= n["score"] <= 1
            for label, score in n["scores"].items():
                assert abs(s["scores"][label] - score) < 1e-4
    elif task == "ner":
        assert [p["tags"] for p in new] == [s["tags"] for s in saved]
        for p in predictor.predict(["john lives in paris"]):
            for e in p["entities"]:
                assert "john lives in paris"[e["start"]:e["end"]] == e["text"]
    else:
        assert [p["answer"] for p in new] == [s["answer"] for s in saved]
        ctx = qa_rows[0]["context"]
        p = predictor.predict([{"question": "what is the capital of france?", "context": ctx}])[0]
        assert ctx[p["start"]:p["end"]] == p["answer"]
