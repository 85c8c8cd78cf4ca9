"""A task is one folder: a toy task defined and registered here, with its own reader, is trained, evaluated and
predicted through the CLI without touching any file outside this test (issue 16)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_jsonl
from tuneforge.data.dataset import Dataset, open_rows, text_value
from tuneforge.tasks import read_options, register_task, task_names, unregister_task
from tuneforge.tasks.classification import ClassificationTask

NAME = "toy-mood"


class MoodTask(ClassificationTask):
    """Sentences with a mood: ``{"phrase": ..., "mood": ...}`` per line. The model side (head, features, decoding,
    metrics) is classification's; the reader is the task's own."""

    name = NAME
    columns = ("text", "label")
    multi_label_capable = False
    detect_order = 1

    def read(self, path: str | os.PathLike[str], **options: Any) -> Dataset:
        opts = read_options(self, options)
        ctx = open_rows(path, opts)
        examples: list[dict[str, Any]] = []
        lines: list[int | None] = []
        for row in ctx.rows:
            phrase = text_value(ctx, row, "phrase", "phrase")
            mood = row.data.get("mood")
            if mood is None and opts.require_labels:
                ctx.problems.group(("mood",), row.line, "mood", "no mood", hint="give every phrase a mood")
                continue
            if phrase is not None:
                examples.append({"text": phrase, "text_pair": None, "label": None if mood is None else str(mood)})
                lines.append(row.line)
        labels = sorted({ex["label"] for ex in examples if ex["label"] is not None})
        if opts.label_set is not None:
            labels = sorted(opts.label_set)
        if opts.require_labels and examples and len(labels) < opts.min_classes:
            ctx.problems.add(None, "mood", f"only {len(labels)} mood(s); training needs {opts.min_classes}")
        return ctx.dataset(self.name, examples, lines, labels)

    def recognises(self, columns: Any) -> bool:
        return "phrase" in columns and "mood" in columns


@pytest.fixture
def mood_task() -> Iterator[MoodTask]:
    task = register_task(MoodTask())
    try:
        yield task
    finally:
        unregister_task(NAME)
    assert NAME not in task_names()


def moods(tmp_path: Path) -> Path:
    happy = ["a sunny day", "we won the game", "i love this song", "a warm hug", "great news today", "so much fun"]
    sad = ["a rainy day", "we lost the game", "i miss you", "a cold night", "bad news today", "so much pain"]
    rows = [{"phrase": p, "mood": "happy"} for p in happy] + [{"phrase": p, "mood": "sad"} for p in sad]
    return write_jsonl(tmp_path / "moods.jsonl", rows)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    from tuneforge.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_toy_task_trains_evaluates_and_predicts_through_the_cli(
        tmp_path: Path, tiny_bert: Path, mood_task: MoodTask, capsys: pytest.CaptureFixture[str]) -> None:
    from tuneforge.tasks import guess_task, load_dataset

    data = moods(tmp_path)
    ds = load_dataset(data, NAME, min_classes=2)  # the task's own reader behind the shared front
    assert ds.task == NAME and ds.labels == ["happy", "sad"] and len(ds) == 12
    assert guess_task(["phrase", "mood"]) == NAME

    code, output = cli(capsys, "data", "check", str(data), "--task", NAME)
    assert code == 0, output
    assert "12 toy-mood examples" in " ".join(output.split())

    run = tmp_path / "run"
    code, output = cli(capsys, "train", "--task", NAME, "--data", str(data), "--base-model", str(tiny_bert),
                       "--output", str(run), "--epochs", "2", "--batch-size", "4", "--precision", "fp32")
    assert code == 0, output
    manifest = json.loads((run / "tuneforge.json").read_text(encoding="utf-8"))
    assert manifest["task"] == NAME and manifest["labels"] == ["happy", "sad"]

    code, output = cli(capsys, "evaluate", str(run), "--data", str(data), "--name", "moods")
    assert code == 0, output
    metrics = json.loads((run / "eval-moods" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == 12 and 0.0 <= metrics["accuracy"] <= 1.0
    assert "## Per class" in (run / "eval-moods" / "report.md").read_text(encoding="utf-8")

    out = tmp_path / "predictions.jsonl"
    code, output = cli(capsys, "predict", str(run), "--data", str(data), "--output", str(out))
    assert code == 0, output
    predictions = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(predictions) == 12 and {p["label"] for p in predictions} <= {"happy", "sad"}

    code, output = cli(capsys, "predict", str(run), "a sunny game", "a cold pain")
    assert code == 0, output
    shown = output.splitlines()
    assert sum(line.split(" ", 1)[0] in ("happy", "sad") for line in shown) == 2


def test_the_toy_tasks_reader_reports_its_problems(tmp_path: Path, mood_task: MoodTask,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"phrase": "x", "mood": "happy"}, {"phrase": "y"}])
    code, output = cli(capsys, "data", "check", str(bad), "--task", NAME)
    assert code == 2
    assert "no mood" in output and "Traceback" not in output
