"""Tasks own their data: readers, cleaners, split keys, records and file-type detection, plus the garbage the
readers refuse (issue 17, item 10)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tuneforge.data import CleanOptions, ColumnMap, SplitKeys
from tuneforge.errors import ConfigError, DataError
from tuneforge.store.datasets import guess_task as store_guess_task
from tuneforge.tasks import (
    clean_dataset,
    get_task,
    guess_task,
    load_dataset,
    register_task,
    split_dataset,
    task_names,
    unregister_task,
    write_dataset,
)
from tuneforge.tasks.classification import ClassificationTask


def jsonl(tmp_path: Path, rows: list[Any], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def problems(*args: Any, **kwargs: Any) -> list:
    with pytest.raises(DataError) as exc:
        load_dataset(*args, **kwargs)
    return exc.value.problems


# --- garbage refused ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["\x00", "\x00\x00 \x00", " \x00\t", "\x07\x00"])
def test_nul_only_text_is_refused_as_empty(tmp_path: Path, blank: str) -> None:
    path = jsonl(tmp_path, [{"text": blank, "label": "a"}, {"text": "fine", "label": "b"}])
    [p] = problems(path, "classification")
    assert p.line == 1 and p.field == "text" and p.message == "empty text"


def test_nul_only_question_token_and_label_are_refused(tmp_path: Path) -> None:
    qa = jsonl(tmp_path, [{"question": "\x00", "context": "c", "answers": {"text": ["c"], "answer_start": [0]}}],
               "qa.jsonl")
    assert [p.message for p in problems(qa, "qa")] == ["empty question"]
    ner = jsonl(tmp_path, [{"tokens": ["a", "\x00"], "tags": ["O", "O"]}], "ner.jsonl")
    assert "token 1 is empty" in problems(ner, "ner")[0].message
    labels = jsonl(tmp_path, [{"text": "x", "label": "\x00"}, {"text": "y", "label": "b"}], "labels.jsonl")
    [p] = problems(labels, "classification")
    assert p.line == 1 and p.message == "label missing"


def test_cleaning_drops_a_nul_only_text(tmp_path: Path) -> None:
    path = jsonl(tmp_path, [{"text": "\x00\x00", "label": "a"}, {"text": "kept\x00", "label": "b"}])
    cleaned, report = clean_dataset(load_dataset(path, "classification", allow_empty=True))
    assert [ex["text"] for ex in cleaned.examples] == ["kept"]
    assert [(line, reason) for line, reason, _ in report.removed] == [(1, "empty")]


def test_labels_differing_only_in_case_warn_and_name_them(tmp_path: Path) -> None:
    rows = [{"text": "good", "label": "Pos"}, {"text": "bad", "label": "neg"}, {"text": "fine", "label": "pos"},
            {"text": "great", "label": "POS"}, {"text": "ok", "label": "pos"}]
    ds = load_dataset(jsonl(tmp_path, rows), "classification", min_classes=2)
    assert ds.labels == ["POS", "Pos", "neg", "pos"]  # still read as given: a warning, not an error
    [w] = ds.warnings
    assert w.field == "label"
    assert "differ only in case" in w.message
    assert "'Pos' (line 1), 'pos' (line 3), 'POS' (line 4)" in w.message
    assert "3 different labels" in w.message
    assert "data clean" in (w.hint or "")


def test_no_case_warning_for_distinct_labels_or_a_given_label_set(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}]
    assert load_dataset(jsonl(tmp_path, rows), "classification").warnings == []
    rows = [{"text": "a", "label": "pos"}, {"text": "b", "label": "Pos"}]
    assert load_dataset(jsonl(tmp_path, rows, "b.jsonl"), "classification", label_set=["pos", "Pos"]).warnings == []


def test_entity_types_differing_only_in_case_warn(tmp_path: Path) -> None:
    rows = [{"tokens": ["Ann"], "tags": ["B-PER"]}, {"tokens": ["Bob"], "tags": ["B-per"]}]
    ds = load_dataset(jsonl(tmp_path, rows), "ner")
    [w] = ds.warnings
    assert "entity types differ only in case" in w.message and "'PER'" in w.message and "'per'" in w.message


def test_a_label_longer_than_1000_characters_is_refused(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": "x" * 1000}, {"text": "b", "label": "y" * 100_000}, {"text": "c", "label": "z"}]
    [p] = problems(jsonl(tmp_path, rows), "classification")
    assert p.line == 2 and p.field == "label"
    assert "longer than 1,000 characters" in p.message
    assert "--label-column" in (p.hint or "")
    multi = [{"text": "a", "label": ["ok", "y" * 1001]}, {"text": "b", "label": ["z"]}]
    assert "longer than 1,000" in problems(jsonl(tmp_path, multi, "m.jsonl"), "classification")[0].message
    ner = [{"tokens": ["a"], "tags": ["B-" + "y" * 1001]}]
    assert "longer than 1,000" in problems(jsonl(tmp_path, ner, "n.jsonl"), "ner")[0].message


def test_data_check_applies_the_training_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`data check` used to say OK for a single-class file that `train` rejects."""
    from tuneforge.cli import main

    path = jsonl(tmp_path, [{"text": "a", "label": "pos"}, {"text": "b", "label": "pos"}])
    assert main(["data", "check", str(path)]) == 2
    captured = capsys.readouterr()
    output = " ".join((captured.out + captured.err).split())
    assert "only 1 distinct label" in output
    assert "OK" not in output
    good = jsonl(tmp_path, [{"text": "a", "label": "Pos"}, {"text": "b", "label": "pos"}, {"text": "c", "label": "n"}],
                 "good.jsonl")
    assert main(["data", "check", str(good)]) == 0
    captured = capsys.readouterr()
    assert "differ only in case" in " ".join((captured.out + captured.err).split())  # the warning train gets too


# --- the task-aware front -----------------------------------------------------------------------------------


def test_load_dataset_dispatches_to_the_tasks_reader(tmp_path: Path) -> None:
    path = jsonl(tmp_path, [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    direct = get_task("classification").read(path, min_classes=2)
    assert load_dataset(path, "classification", min_classes=2) == direct
    with pytest.raises(ConfigError, match="unknown task 'nope' \\(choose from classification, generation, ner, qa\\)"):
        load_dataset(path, "nope")
    with pytest.raises(ConfigError) as exc:
        load_dataset(path, "nope", min_classes=0)
    assert len(exc.value.problems) == 2  # every problem at once, as before
    with pytest.raises(ConfigError, match="label_set: does not apply to the qa task"):
        load_dataset(path, "qa", label_set=["a"])
    with pytest.raises(ConfigError, match="--question-column: does not apply to the ner task"):
        load_dataset(path, "ner", columns=ColumnMap(question="q"))


def test_guess_task_keeps_its_detection_order() -> None:
    assert guess_task(["Tokens", "question", "context"]) == "ner"  # ner is asked first
    assert guess_task(["words", "tags"]) == "ner"
    assert guess_task(["question", "passage", "answers"]) == "qa"
    assert guess_task(["question", "label"]) == "classification"  # a question alone is a text column
    assert guess_task([]) == "classification"
    assert store_guess_task(["QUESTION", "Paragraph"]) == "qa"


def test_a_registered_task_is_detected_by_its_recognises_and_unregistered(tmp_path: Path) -> None:
    class Keyword(ClassificationTask):
        name = "keyword-test"
        detect_order = 5

        def recognises(self, columns: Any) -> bool:
            return "keyword" in columns

    register_task(Keyword())
    try:
        assert "keyword-test" in task_names()
        assert guess_task(["keyword", "tokens"]) == "keyword-test"
        ds = load_dataset(jsonl(tmp_path, [{"text": "a", "label": "x"}]), "keyword-test")
        assert ds.task == "keyword-test"
    finally:
        unregister_task("keyword-test")
    assert "keyword-test" not in task_names()
    assert guess_task(["keyword", "tokens"]) == "ner"


def test_split_keys_come_from_the_task(tmp_path: Path) -> None:
    cls = get_task("classification").split_keys([{"label": "a"}, {"label": ["b", "c"]}, {"label": []}])
    assert cls == SplitKeys(strata=["a", "b", ""])
    assert get_task("classification").split_keys([{"label": "a"}, {"label": None}]) == SplitKeys()
    assert get_task("ner").split_keys([{"tokens": ["a"], "tags": None}]) == SplitKeys()
    qa = get_task("qa").split_keys([{"title": "T", "context": "c"}, {"title": None, "context": "d"}])
    assert qa.groups == ["c", "d"] and qa.group_noun == "distinct contexts"
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(20)]
    parts = split_dataset(load_dataset(jsonl(tmp_path, rows), "classification"), dev=0.2, test=0.2, seed=0)
    for part in ("train", "dev", "test"):
        labels = [ex["label"] for ex in parts[part].examples]
        assert labels.count("a") == labels.count("b")  # stratified


def test_write_dataset_uses_the_tasks_record(tmp_path: Path) -> None:
    qa = jsonl(tmp_path, [{"id": "q1", "question": "Who?", "context": "Ann.",
                           "answers": {"text": ["Ann"], "answer_start": [0]}}])
    out = tmp_path / "out.jsonl"
    write_dataset(load_dataset(qa, "qa"), out)
    assert list(json.loads(out.read_text(encoding="utf-8"))) == ["id", "context", "question", "answers"]
    cls = jsonl(tmp_path, [{"text": "a", "label": "x"}], "c.jsonl")
    write_dataset(load_dataset(cls, "classification"), out)
    assert json.loads(out.read_text(encoding="utf-8")) == {"text": "a", "label": "x"}


def test_clean_dataset_uses_the_tasks_cleaner(tmp_path: Path) -> None:
    rows = [{"tokens": ["ＥＵ"], "tags": ["B-ORG"]}, {"tokens": ["EU"], "tags": ["B-ORG"]}]
    cleaned, report = clean_dataset(load_dataset(jsonl(tmp_path, rows), "ner"), CleanOptions())
    assert cleaned.examples == [{"tokens": ["EU"], "tags": ["B-ORG"]}]
    assert report.counts() == {"duplicate": 1}
