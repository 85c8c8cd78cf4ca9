"""Lenient QA import (issue 23): answer offsets that are a little off (UTF-16 units, UTF-8 bytes, a few characters)
are repaired when the answer text is found nearby and reported; answers that cannot be located are dropped with a
per-line report; --strict keeps the refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tuneforge.cli import main
from tuneforge.errors import DataError
from tuneforge.tasks import load_dataset
from tuneforge.tasks.qa.offsets import locate_answer, utf16_to_index
from tuneforge.training import load_training_data

CTX = "𠮷野家是一家日本连锁快餐店。它成立于1899年，总部位于东京。"


def cmrc_rows(n: int = 6) -> list[dict[str, Any]]:
    """The acceptance check's file: an astral character before the answers, offsets counted in UTF-16 units."""
    rows = []
    for i in range(n):
        q, a = ("总部位于哪里？", "东京") if i % 2 else ("成立于哪一年？", "1899年")
        rows.append({"id": str(i), "question": q, "context": CTX,
                     "answers": {"text": [a], "answer_start": [CTX.index(a) + 1]}})
    return rows


def write(tmp_path: Path, rows: list[dict[str, Any]], name: str = "qa.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_locate_answer_tries_utf16_bytes_then_the_nearest_occurrence() -> None:
    assert utf16_to_index("𠮷ab", 2) == 1 and utf16_to_index("𠮷ab", 1) is None  # inside the surrogate pair
    located = locate_answer(CTX, "东京", CTX.index("东京") + 1)
    assert (located.start, located.reason) == (CTX.index("东京"), "utf16")
    text = "Café à Paris."
    assert locate_answer(text, "Paris", len("Café à ".encode())).reason == "utf8"
    ctx = "the cat sat; the cat ran; the cat slept"
    nearest = locate_answer(ctx, "cat", 15)  # occurrences at 4, 17, 30: 17 is nearest
    assert (nearest.start, nearest.reason) == (17, "nearby")
    assert locate_answer(ctx, "cat", 4).start == 4 and locate_answer(ctx, "cat", 4).reason is None
    far = "x" * 200 + " unique " + "y" * 200
    assert locate_answer(far, "unique", 0).reason == "only"  # one occurrence: no doubt where it is
    ambiguous = "cat " + "z" * 300 + " cat"
    assert locate_answer(ambiguous, "cat", 150).start is None  # two far-away occurrences: not guessed
    assert locate_answer(CTX, "大阪", 3).start is None


def test_cmrc_style_utf16_offsets_are_repaired_and_reported(tmp_path: Path) -> None:
    path = write(tmp_path, cmrc_rows())
    with pytest.raises(DataError):
        load_dataset(path, "qa")  # the library's default is strict
    ds = load_dataset(path, "qa", repair_offsets=True)
    assert len(ds) == 6
    for ex in ds.examples:
        start, text = ex["answers"]["answer_start"][0], ex["answers"]["text"][0]
        assert CTX[start:start + len(text)] == text
    (warning,) = ds.warnings
    assert warning.line == 1 and warning.field == "answers" and warning.file == str(path)
    assert "repaired 6 answer offset(s)" in warning.message and "UTF-16" in warning.message
    assert "line 2: '东京' 29 -> 28" in warning.message


def test_answers_that_cannot_be_located_are_dropped_line_by_line(tmp_path: Path) -> None:
    rows = cmrc_rows(4)
    rows[1]["answers"] = {"text": ["东京", "大阪"], "answer_start": [28, 5]}  # one good, one not in the context
    rows[2]["answers"] = {"text": ["名古屋"], "answer_start": [3]}  # nothing left: the question goes
    ds = load_dataset(write(tmp_path, rows), "qa", repair_offsets=True)
    assert [ex["id"] for ex in ds.examples] == ["0", "1", "3"]
    assert ds.examples[1]["answers"] == {"text": ["东京"], "answer_start": [28]}
    dropped = [w for w in ds.warnings if "dropped" in w.message]
    assert [(w.line, w.field) for w in dropped] == [(2, "answers"), (3, "answers")]
    assert "'大阪'" in dropped[0].message and "answer 1" in dropped[0].message
    nothing = write(tmp_path, [rows[2]], "none.jsonl")  # no question left: its answers are the errors
    with pytest.raises(DataError) as e:
        load_dataset(nothing, "qa", repair_offsets=True)
    (problem,) = e.value.problems
    assert problem.line == 1 and problem.field == "answers" and "'名古屋'" in problem.message


def test_strict_keeps_the_refusal_for_train_and_data_check(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, cmrc_rows())
    train_ds, _ = load_training_data("qa", path, strict=False)  # what `tuneforge train` does without --strict
    assert len(train_ds) == 6 and train_ds.warnings
    with pytest.raises(DataError) as e:
        load_training_data("qa", path)  # the service's upload checks keep the refusal
    assert len(e.value.problems) == 6 and "UTF-16" in (e.value.problems[0].hint or "")

    assert main(["data", "check", str(path), "--no-pii-scan"]) == 0
    captured = capsys.readouterr()
    assert "repaired 6 answer offset(s)" in " ".join(captured.out.split())
    assert main(["data", "check", str(path), "--strict", "--no-pii-scan"]) == 2
    assert main(["train", "--task", "qa", "--data", str(path), "-o", str(tmp_path / "run"), "--strict"]) == 2
    assert "span not in its context" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
