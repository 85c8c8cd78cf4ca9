"""Evaluation reports take their wording from the task, and read run folders through the run-folder contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.data import Dataset
from tuneforge.errors import TuneforgeError
from tuneforge.evaluation.report import read_evaluation, write_evaluation
from tuneforge.tasks import get_task


def _dataset(task: str, examples: list[dict]) -> Dataset:
    return Dataset(path="dev.jsonl", format="jsonl", task=task, examples=examples,
                   lines=list(range(1, len(examples) + 1)), fingerprint="sha256:0", labels=[])


def test_per_class_heading_is_the_tasks_label_noun(tmp_path: Path) -> None:
    task = get_task("ner")
    examples = [{"tokens": ["ann", "runs"], "tags": ["B-PER", "O"]}]
    predictions = [{"tags": ["B-PER", "O"], "entities": [{"type": "PER", "start": 0, "end": 3, "text": "ann"}]}]
    write_evaluation(tmp_path / "eval", task, predictions, _dataset("ner", examples), ["PER"])
    report = (tmp_path / "eval" / "report.md").read_text(encoding="utf-8")
    assert "## Per entity type" in report and "| entity type | precision |" in report
    cls = get_task("classification")
    write_evaluation(tmp_path / "eval2", cls, [{"label": "a", "score": 0.9}, {"label": "a", "score": 0.8}],
                     _dataset("classification", [{"text": "x", "text_pair": None, "label": "a"},
                                                 {"text": "y", "text_pair": None, "label": "b"}]), ["a", "b"])
    report = (tmp_path / "eval2" / "report.md").read_text(encoding="utf-8")
    assert "## Per class" in report and "## Errors (1 of 2)" in report


def test_read_evaluation_refuses_a_damaged_manifest(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "tuneforge.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TuneforgeError, match="not valid JSON"):
        read_evaluation(run)
    (run / "tuneforge.json").write_text(json.dumps({"format_version": 1, "task": "classification",
                                                    "labels": ["a", "b"]}), encoding="utf-8")
    summary = read_evaluation(run)
    assert summary["task"] == "classification" and summary["labels"] == ["a", "b"] and summary["evaluation"] is None
