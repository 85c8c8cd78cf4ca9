"""A generation evaluation's report: the task lays out tables of prompt / reference / generated (the worst and a
sample) through its ``report_sections`` hook; the report folder goes wherever --output says, never over a folder
that is not a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.data import Dataset
from tuneforge.errors import RunError
from tuneforge.evaluation.evaluate import report_folder
from tuneforge.evaluation.report import write_evaluation
from tuneforge.tasks import get_task
from tuneforge.tasks.generation.samples import cell, reply_tables
from tuneforge.tasks.generation.task import split_reference


def conversation(question: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question},
                         {"role": "assistant", "content": answer, "weight": 1}]}


def dataset(examples: list[dict]) -> Dataset:
    return Dataset(path="test.jsonl", format="chat", task="generation", examples=examples,
                   lines=[10 + i for i in range(len(examples))], fingerprint="sha256:0", labels=[])


def test_the_report_shows_the_worst_replies_and_a_sample(tmp_path: Path) -> None:
    examples = [conversation(f"Question {i}?", f"answer number {i}") for i in range(30)]
    texts = [f"answer number {i}" for i in range(30)]
    texts[3] = "nothing like it"               # F1 0: the worst
    texts[7] = "answer | with a pipe\nand a line break"  # F1 > 0, wrong
    preds = [{"text": t, "loss_sum": 2.0, "tokens": 4, "correct": 2} for t in texts]
    metrics = write_evaluation(tmp_path / "eval", get_task("generation"), preds, dataset(examples), [])
    assert metrics["valid_loss"] == pytest.approx(0.5) and metrics["exact_match"] == pytest.approx(100 * 28 / 30)
    report = (tmp_path / "eval" / "report.md").read_text(encoding="utf-8")
    assert "## Replies (2 of 30 differ from the reference)" in report and "## Errors" not in report
    worst = report.split("### The worst 2 (lowest F1)")[1].split("###")[0]
    rows = [r for r in worst.splitlines() if r.startswith("| 1")]
    assert rows[0] == "| 13 | Question 3? | answer number 3 | nothing like it | 0 |"  # line 10 + 3, lowest F1 first
    assert rows[1].startswith("| 17 | Question 7? | answer number 7 | answer \\| with a pipe and a line break |")
    sample = report.split("### A sample of 10")[1]
    assert len([r for r in sample.splitlines() if r.startswith("| ") and "line" not in r]) == 10
    again = tmp_path / "again"
    write_evaluation(again, get_task("generation"), preds, dataset(examples), [])
    assert (again / "report.md").read_text(encoding="utf-8") == report  # the same sample every time
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))["f1"] == metrics["f1"]


def test_prompts_without_a_reference_fall_back_to_the_list_of_mistakes() -> None:
    prompts = [{"messages": [{"role": "user", "content": "Hi"}]}]
    assert reply_tables([{"text": "Hello"}], prompts, [1], split_reference=split_reference) == []
    assert get_task("generation").report_sections([{"text": "Hello"}], prompts, [1]) is None


def test_cells_are_one_line_and_short() -> None:
    assert cell("a|b\nc") == "a\\|b c"
    assert cell("") == "(empty)"
    long = cell("word " * 200)
    assert len(long) <= 300 and long.endswith("…")


def test_the_report_folder_is_never_a_folder_of_other_files(tmp_path: Path) -> None:
    assert report_folder(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert report_folder(tmp_path / "empty") == tmp_path / "empty"
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "metrics.json").write_text("{}", encoding="utf-8")
    assert report_folder(earlier) == earlier  # an earlier report is replaced
    other = tmp_path / "run"
    other.mkdir()
    (other / "tuneforge.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RunError, match="not an evaluation report"):
        report_folder(other)
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(RunError, match="is a file"):
        report_folder(tmp_path / "file")
