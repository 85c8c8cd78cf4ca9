"""docs/using-runs-elsewhere.md is true: its code blocks, run as they are written (only ``RUN`` pointed at a tiny
run folder trained here), load the runs with plain transformers and give what TuneForge gives."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from tests.conftest import write_jsonl
from tuneforge.inference import load_predictor
from tuneforge.training import make_config, train

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115
DOC = Path(__file__).resolve().parents[2] / "docs" / "using-runs-elsewhere.md"


def snippet(section: str) -> str:
    """The python code block under the doc's ``## section`` heading."""
    text = DOC.read_text(encoding="utf-8")
    part = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", part, flags=re.S)
    return code


def run_snippet(section: str, run: Path, **names: object) -> dict:
    """Execute the block with ``RUN`` pointed at ``run``; returns the names it defined."""
    code, n = re.subn(r'^RUN = ".*"$', f"RUN = {str(run)!r}", snippet(section), flags=re.M)
    assert n == 1, f"the {section} snippet must set RUN once"
    scope: dict = dict(names)
    exec(compile(code, f"{DOC.name}:{section}", "exec"), scope)  # noqa: S102 - the documentation's own code
    return scope


def _train(tmp_path: Path, tiny_bert: Path, task: str, rows: list[dict], **extra: object) -> Path:
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = make_config({"task": task, "data": str(data), "base_model": str(tiny_bert), "output": str(tmp_path / "run"),
                       "epochs": 3, "batch_size": 4, "learning_rate": 3e-3, "precision": "fp32", **extra})
    return train(cfg, console=QUIET).output


def test_the_classification_pipeline_gives_tuneforges_labels_and_scores(tmp_path, tiny_bert, cls_rows):
    from transformers import pipeline

    run = _train(tmp_path, tiny_bert, "classification", cls_rows)
    scope = run_snippet("Classification", run)
    texts = ["a delight from start to finish", "two hours I will never get back"]
    ours = load_predictor(run).predict(texts)
    assert [r["label"] for r in scope["results"]] == [p["label"] for p in ours]
    assert np.allclose([r["score"] for r in scope["results"]], [p["score"] for p in ours], atol=1e-5)
    # the doc's sentence-pair form
    pair = {"text": "a good movie", "text_pair": "is it good?"}
    assert scope["classify"](pair)["label"] == load_predictor(run).predict([pair])[0]["label"]
    # and the doc's multi-label arguments give every label's probability, as TuneForge does
    multi_rows = [{"text": r["text"], "label": [r["label"], "film"] if "film" in r["text"] else [r["label"]]}
                  for r in cls_rows]
    (tmp_path / "multi").mkdir()
    multi = _train(tmp_path / "multi", tiny_bert, "classification", multi_rows)
    every = pipeline("text-classification", model=str(multi), top_k=None, function_to_apply="sigmoid")
    [got] = every(["a good film"])  # one list of every label's score per text
    want = load_predictor(multi).predict(["a good film"])[0]["scores"]
    assert {r["label"]: pytest.approx(r["score"], abs=1e-5) for r in got} == want


def test_the_token_classification_pipeline_groups_words_with_offsets(tmp_path, tiny_bert, ner_rows):
    run = _train(tmp_path, tiny_bert, "ner", ner_rows, epochs=8)
    scope = run_snippet("Named entities", run)
    text = "john lives in paris"
    entities = scope["entities"]
    assert entities, "the trained tagger found nothing"
    for e in entities:
        assert text[e["start"]:e["end"]] == e["word"] and e["entity_group"] in {"PER", "LOC", "ORG"}
    ours = load_predictor(run).predict([text])[0]["entities"]
    assert [(e["entity_group"], e["start"], e["end"]) for e in entities] == [
        (e["type"], e["start"], e["end"]) for e in ours]


def test_the_question_answering_snippet_answers_as_tuneforge_does(tmp_path, tiny_bert, qa_rows):
    run = _train(tmp_path, tiny_bert, "qa", qa_rows, epochs=6, max_length=48, stride=16)
    scope = run_snippet("Question answering", run)
    res = scope["result"]  # the doc's own call
    assert res["answer"] and res["answer"] == "paris is the capital of france."[res["start"]:res["end"]]
    predictor = load_predictor(run)
    context = qa_rows[0]["context"] + " london has a long river and many bridges. " + qa_rows[0]["context"]
    questions = sorted({r["question"] for r in qa_rows}) + ["which river is long?"]
    for q in questions:
        got = scope["answer"](q, context, max_length=48, stride=16)
        want = predictor.predict([{"question": q, "context": context}])[0]
        assert (got["answer"], got["start"], got["end"]) == (want["answer"], want["start"], want["end"])
        assert context[got["start"]:got["end"]] == got["answer"] and got["answer"]
    assert len(predictor.tokenizer(questions[0], context)["input_ids"]) > 48 + 16  # several windows


def test_the_embedding_snippet_gives_the_api_vectors(tmp_path, tiny_bert, cls_rows):
    from tuneforge.inference.embeddings import load_embedder

    run = _train(tmp_path, tiny_bert, "classification", cls_rows)
    scope = run_snippet("Sentence embeddings", run)
    vectors = scope["vectors"].numpy()
    assert np.allclose(vectors, load_embedder(run).embed(["a delight", "a bore"]), atol=1e-5)


def test_an_exported_adapter_run_loads_in_the_pipeline(tmp_path, tiny_bert, cls_rows):
    from tuneforge.inference.export import export_merged

    run = _train(tmp_path, tiny_bert, "classification", cls_rows, method="lora")
    export_merged(run, tmp_path / "merged")
    scope = run_snippet("Classification", tmp_path / "merged")
    ours = load_predictor(run).predict(["a delight from start to finish", "two hours I will never get back"])
    assert [r["label"] for r in scope["results"]] == [p["label"] for p in ours]
    assert np.allclose([r["score"] for r in scope["results"]], [p["score"] for p in ours], atol=1e-5)
