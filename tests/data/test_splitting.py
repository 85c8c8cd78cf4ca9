"""Splitting (stratified, grouped, random), its validation, and write → load round trips."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tuneforge.data import Dataset
from tuneforge.errors import ConfigError
from tuneforge.tasks import load_dataset, split_dataset, write_dataset


def dataset(tmp_path: Path, rows: list[dict[str, Any]], task: str = "classification", **kwargs: Any) -> Dataset:
    path = tmp_path / f"{task}-{len(list(tmp_path.iterdir()))}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return load_dataset(path, task, **kwargs)


def classification(tmp_path: Path, counts: dict[str, int]) -> Dataset:
    rows = [{"text": f"{label} example {i}", "label": label} for label, n in counts.items() for i in range(n)]
    return dataset(tmp_path, rows)


def label_counts(ds: Dataset) -> Counter[str]:
    return Counter(ex["label"] for ex in ds.examples)


# --- classification ------------------------------------------------------------------------------------------


def test_stratified_split_keeps_class_proportions(tmp_path: Path) -> None:
    ds = classification(tmp_path, {"a": 700, "b": 200, "c": 100})
    parts = split_dataset(ds, dev=0.1, test=0.1, seed=0)
    assert {k: len(v) for k, v in parts.items()} == {"train": 800, "dev": 100, "test": 100}
    for name, expected in (("dev", {"a": 70, "b": 20, "c": 10}), ("test", {"a": 70, "b": 20, "c": 10}),
                           ("train", {"a": 560, "b": 160, "c": 80})):
        got = label_counts(parts[name])
        assert all(abs(got[k] - v) <= 1 for k, v in expected.items()), (name, got)
    # Disjoint, complete, and each split in file order.
    lines = [line or 0 for part in parts.values() for line in part.lines]
    assert sorted(lines) == ds.lines
    assert all(part.lines == sorted(line or 0 for line in part.lines) for part in parts.values())
    assert all(part.labels == ["a", "b", "c"] for part in parts.values())


def test_split_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    ds = classification(tmp_path, {"a": 60, "b": 40})
    first = split_dataset(ds, seed=3)
    again = split_dataset(ds, seed=3)
    other = split_dataset(ds, seed=4)
    assert {k: v.lines for k, v in first.items()} == {k: v.lines for k, v in again.items()}
    assert first["test"].lines != other["test"].lines


def test_classes_too_small_to_stratify_stay_in_train(tmp_path: Path) -> None:
    ds = classification(tmp_path, {"a": 50, "b": 50, "rare": 1})
    parts = split_dataset(ds, dev=0.2, test=0.2, seed=0)
    assert label_counts(parts["train"])["rare"] == 1
    for name in ("dev", "test"):
        counts = label_counts(parts[name])
        assert len(parts[name]) == 21  # ceil(0.2 * 101)
        assert set(counts) == {"a", "b"} and min(counts.values()) >= 10
    assert parts["dev"].labels == ["a", "b", "rare"]


def test_multi_label_is_stratified_on_the_first_label(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": ["x", "y"] if i % 4 else ["y"]} for i in range(80)]
    parts = split_dataset(dataset(tmp_path, rows), dev=0.25, test=0.25, seed=1)
    for name in ("dev", "test"):
        firsts = Counter(ex["label"][0] for ex in parts[name].examples)
        assert firsts == {"x": 15, "y": 5}
    assert parts["train"].multi_label


def test_unlabelled_data_splits_randomly(tmp_path: Path) -> None:
    ds = dataset(tmp_path, [{"text": f"t{i}"} for i in range(20)], require_labels=False)
    parts = split_dataset(ds, dev=0.1, test=0.1)
    assert [len(p) for p in parts.values()] == [16, 2, 2]


def test_zero_fraction_omits_the_split(tmp_path: Path) -> None:
    ds = classification(tmp_path, {"a": 10, "b": 10})
    parts = split_dataset(ds, dev=0.0, test=0.25)
    assert set(parts) == {"train", "test"}
    assert (len(parts["train"]), len(parts["test"])) == (15, 5)
    assert set(split_dataset(ds, dev=0, test=0)) == {"train"}


@pytest.mark.parametrize(("dev", "test", "message"), [
    (-0.1, 0.1, "dev: must be a fraction in [0, 1)"),
    (0.1, 1.0, "test: must be a fraction in [0, 1)"),
    (0.5, 0.5, "dev + test: must be below 1"),
    (float("nan"), 0.1, "dev: must be a fraction"),
])
def test_bad_fractions(tmp_path: Path, dev: float, test: float, message: str) -> None:
    ds = classification(tmp_path, {"a": 10, "b": 10})
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("+", r"\+").replace(")", r"\)")):
        split_dataset(ds, dev=dev, test=test)


def test_too_few_examples(tmp_path: Path) -> None:
    ds = classification(tmp_path, {"a": 1, "b": 1})
    with pytest.raises(ConfigError, match="too few"):
        split_dataset(ds, dev=0.1, test=0.1)


# --- ner and qa ----------------------------------------------------------------------------------------------


def test_ner_random_split(tmp_path: Path) -> None:
    rows = [{"tokens": [f"w{i}", "x"], "tags": ["B-PER", "O"]} for i in range(50)]
    ds = dataset(tmp_path, rows, "ner")
    parts = split_dataset(ds, dev=0.2, test=0.1, seed=5)
    assert [len(p) for p in parts.values()] == [35, 10, 5]
    assert split_dataset(ds, dev=0.2, test=0.1, seed=5)["dev"].examples == parts["dev"].examples
    assert parts["test"].labels == ["PER"]


def qa_rows(n_articles: int, *, titled: bool = True) -> list[dict[str, Any]]:
    rows = []
    for a in range(n_articles):
        for p in range(2):
            context = f"Article {a} paragraph {p} talks about topic {a}."
            for q in range(3):
                row = {"id": f"{a}-{p}-{q}", "question": f"Q{q} about {a}?", "context": context,
                       "answers": {"text": [f"topic {a}"], "answer_start": [context.index(f"topic {a}")]}}
                if titled:
                    row["title"] = f"Article_{a}"
                rows.append(row)
    return rows


def test_qa_split_never_shares_an_article(tmp_path: Path) -> None:
    ds = dataset(tmp_path, qa_rows(30), "qa")
    parts = split_dataset(ds, dev=0.1, test=0.2, seed=0)
    titles = {name: {ex["title"] for ex in part.examples} for name, part in parts.items()}
    assert not titles["train"] & titles["dev"] and not titles["train"] & titles["test"]
    assert not titles["dev"] & titles["test"]
    assert (len(titles["dev"]), len(titles["test"])) == (3, 6)
    assert sum(len(p) for p in parts.values()) == len(ds)


def test_qa_without_titles_groups_by_context(tmp_path: Path) -> None:
    ds = dataset(tmp_path, qa_rows(10, titled=False), "qa")
    parts = split_dataset(ds, dev=0.2, test=0.2, seed=2)
    contexts = {name: {ex["context"] for ex in part.examples} for name, part in parts.items()}
    assert not contexts["train"] & contexts["dev"] and not contexts["train"] & contexts["test"]
    assert not contexts["dev"] & contexts["test"]
    assert all(len(p) % 3 == 0 for p in parts.values())  # the 3 questions of a context travel together


def test_qa_with_too_few_articles(tmp_path: Path) -> None:
    ds = dataset(tmp_path, qa_rows(2), "qa")
    with pytest.raises(ConfigError, match="2 articles"):
        split_dataset(ds, dev=0.1, test=0.1)


# --- write → load --------------------------------------------------------------------------------------------


ROUND_TRIPS = [
    ("classification", [{"text": "Great film", "label": "pos"}, {"text": "电影很好看\u2028!", "label": 1}], {}),
    ("classification", [{"sentence1": "A man sleeps.", "sentence2": "A person rests.", "label": "entailment"}], {}),
    ("classification", [{"text": "a", "labels": ["x", "y"]}, {"text": "b", "labels": []}], {}),
    ("classification", [{"text": "no label here"}, {"text": "nor here"}], {"require_labels": False}),
    ("ner", [{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]},
             {"tokens": ["北", "京"], "tags": ["B-LOC", "I-LOC"]}], {}),
    ("ner", [{"tokens": ["just", "tokens"]}], {"require_labels": False}),
    ("qa", qa_rows(1) + [{"question": "Untitled?", "context": "No title here.",
                          "answers": [{"text": "title", "answer_start": 3}]}], {}),
]


@pytest.mark.parametrize(("task", "rows", "kwargs"), ROUND_TRIPS)
def test_write_then_load_gives_the_same_examples(tmp_path: Path, task: str, rows: list[dict[str, Any]],
                                                 kwargs: dict[str, Any]) -> None:
    ds = dataset(tmp_path, rows, task, **kwargs)
    out = tmp_path / "out" / "written.jsonl"
    write_dataset(ds, out)
    back = load_dataset(out, task, **kwargs)
    assert back.examples == ds.examples
    assert back.labels == ds.labels
    assert back.multi_label == ds.multi_label
    assert [p.name for p in out.parent.iterdir()] == ["written.jsonl"]  # no temporary file left behind


def test_written_qa_uses_the_squad_layout(tmp_path: Path) -> None:
    ds = dataset(tmp_path, qa_rows(1)[:1], "qa")
    out = tmp_path / "qa.jsonl"
    write_dataset(ds, out)
    record = json.loads(out.read_text(encoding="utf-8"))
    assert list(record) == ["id", "title", "context", "question", "answers"]
    assert record["answers"] == {"text": ["topic 0"], "answer_start": [record["context"].index("topic 0")]}


def test_written_split_loads_back(tmp_path: Path) -> None:
    ds = classification(tmp_path, {"a": 30, "b": 20})
    parts = split_dataset(ds, seed=0)
    write_dataset(parts["train"], tmp_path / "train.jsonl")
    back = load_dataset(tmp_path / "train.jsonl", "classification")
    assert back.examples == parts["train"].examples


@pytest.mark.slow
def test_shared_squad_split_keeps_articles_apart() -> None:
    env = os.environ.get("TUNEFORGE_SHARED_DIR")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared"
    path = base / "datasets" / "squad_v1.1" / "train_by_article.jsonl"
    if not path.is_file():
        pytest.skip(f"shared datasets not found at {path.resolve()} (set TUNEFORGE_SHARED_DIR to the shared folder)")
    parts = split_dataset(load_dataset(path, "qa"), dev=0.1, test=0.1, seed=0)
    titles = [{ex["title"] for ex in part.examples} for part in parts.values()]
    assert not titles[0] & titles[1] and not titles[0] & titles[2] and not titles[1] & titles[2]
    assert sum(len(p) for p in parts.values()) == 8_527
