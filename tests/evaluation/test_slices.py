"""Fairness slices: each slice's metrics equal the task's scoring of that subset alone, gaps and flags follow the
threshold, columns and metadata fields are read from the raw rows, and fairlearn's parity / equalized-odds
differences match a hand computation on a constructed binary case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tuneforge.errors import ConfigError
from tuneforge.evaluation.report import read_evaluation, write_evaluation
from tuneforge.evaluation.slices import compute_slices, example_text, slice_values
from tuneforge.tasks import get_task, load_dataset

# text, label, prediction, group, metadata.source
ROWS = [
    ("a good movie", "pos", "pos", "a", "web"),
    ("great fun", "pos", "pos", "a", "web"),
    ("i loved it", "pos", "neg", "a", "app"),
    ("a bad movie", "neg", "neg", "a", "app"),
    ("awful and boring", "neg", "pos", "b", "web"),
    ("very bad", "neg", "neg", "b", "web"),
    ("not good", "neg", "pos", "b", "app"),
    ("good fun", "pos", "neg", "b", "app"),
    ("really great", "pos", "pos", "b", "app"),
    ("boring film", "neg", "neg", "a", "web"),
]


def _data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "test.jsonl", [{"text": t, "label": y, "group": g, "metadata": {"source": s}}
                                                 for t, y, _, g, s in ROWS])


def _preds() -> list[dict]:
    return [{"label": p, "score": 0.9, "scores": {p: 0.9}} for _, _, p, _, _ in ROWS]


def test_slice_metrics_equal_a_recomputation_on_each_subset(tmp_path: Path) -> None:
    ds = load_dataset(_data(tmp_path), "classification")
    task = get_task("classification")
    values = slice_values(ds, ["group", "metadata.source"])
    assert values["group"] == [g for *_, g, _ in ROWS] and values["metadata.source"] == [s for *_, s in ROWS]
    rep = compute_slices(task, _preds(), ds.examples, ["neg", "pos"], values, min_gap=0.1)
    overall = sum(y == p for _, y, p, _, _ in ROWS) / len(ROWS)  # 6 of 10
    for slicer, col in (("group", 3), ("metadata.source", 4)):
        for value, m in rep.slices[slicer].items():
            rows = [r for r in ROWS if r[col] == value]
            acc = sum(y == p for _, y, p, _, _ in rows) / len(rows)
            assert m["n"] == len(rows)
            assert m["accuracy"] == pytest.approx(acc)
            assert m["gap"] == pytest.approx(acc - overall)
            assert m["flagged"] == (acc < overall - 0.1)
            # the task's own scoring of the subset, every metric
            idx = [i for i, r in enumerate(ROWS) if r[col] == value]
            alone = task.score([_preds()[i] for i in idx], [ds.examples[i] for i in idx], ["neg", "pos"])
            assert m["macro_f1"] == pytest.approx(alone["macro_f1"])
    # group a: 4 of 5 right (0.8), b: 2 of 5 (0.4, flagged at gap 0.1); web 4/5, app 2/5
    assert rep.slices["group"]["a"]["accuracy"] == pytest.approx(0.8)
    assert rep.summary["group"]["flagged"] == ["b"] and rep.summary["group"]["worst"] == "b"
    assert rep.summary["group"]["difference"] == pytest.approx(0.4)
    assert rep.summary["metadata.source"]["flagged"] == ["app"]
    # a looser threshold flags nothing
    loose = compute_slices(task, _preds(), ds.examples, ["neg", "pos"], values, min_gap=0.25)
    assert not any(m["flagged"] for t in loose.slices.values() for m in t.values())


def test_binary_parity_and_equalized_odds_match_a_hand_computation(tmp_path: Path) -> None:
    ds = load_dataset(_data(tmp_path), "classification")
    rep = compute_slices(get_task("classification"), _preds(), ds.examples, ["neg", "pos"],
                         slice_values(ds, ["group"]))
    s = rep.summary["group"]
    assert s["positive_label"] == "pos"

    def rates(g: str) -> tuple[float, float, float]:
        rows = [r for r in ROWS if r[3] == g]
        sel = sum(p == "pos" for *_, p, _, _ in [(r[0], r[1], r[2], r[3], r[4]) for r in rows]) / len(rows)
        pos = [r for r in rows if r[1] == "pos"]
        neg = [r for r in rows if r[1] == "neg"]
        tpr = sum(r[2] == "pos" for r in pos) / len(pos)
        fpr = sum(r[2] == "pos" for r in neg) / len(neg)
        return sel, tpr, fpr

    (sa, ta, fa), (sb, tb, fb) = rates("a"), rates("b")
    assert s["demographic_parity_difference"] == pytest.approx(abs(sa - sb))  # 0.4 vs 0.6
    assert s["equalized_odds_difference"] == pytest.approx(max(abs(ta - tb), abs(fa - fb)))
    assert s["equalized_odds_difference"] > 0


def test_builtin_slicers_length_script_and_numbers() -> None:
    from tuneforge.data import Dataset

    texts = ["one two three four five six seven eight nine ten",  # 10 words: short
             " ".join(["w"] * 11),  # medium
             " ".join(["w"] * 26),  # long
             "这部电影很好看", "hello 你好 world", "Привет мир", "order 42 shipped", "１２３ ok", "?!"]
    ds = Dataset(path="x.jsonl", format="jsonl", task="classification",
                 examples=[{"text": t, "text_pair": None, "label": "a"} for t in texts],
                 lines=list(range(1, len(texts) + 1)), fingerprint="sha256:0", labels=["a"])
    v = slice_values(ds, ["length", "script", "has_number"])
    assert v["length"][:4] == ["short", "medium", "long", "short"]
    assert v["script"][3:6] == ["Han", "Latin+Han", "Cyrillic"] and v["script"][-1] == "none"
    assert v["has_number"] == ["no"] * 6 + ["yes", "yes", "no"]
    assert example_text({"tokens": ["张", "三", "lives", "here"], "tags": ["O"] * 4}) == "张三 lives here"


def test_unknown_and_unusable_columns_are_refused_with_the_columns_listed(tmp_path: Path) -> None:
    rows = [{"text": f"text {i}", "label": "a" if i % 2 else "b", "tags": ["x"], "metadata": {"source": "s"}}
            for i in range(60)]
    ds = load_dataset(write_jsonl(tmp_path / "d.jsonl", rows), "classification")
    with pytest.raises(ConfigError) as e:
        slice_values(ds, ["nope", "tags", "text"])
    msg = str(e.value)
    assert "'nope' is no column" in msg and "metadata.source" in msg and "length" in msg
    assert "'tags' holds lists" in msg and "'text' has 60 distinct values" in msg
    assert slice_values(ds, ["column:label"])["column:label"][:2] == ["b", "a"]


def test_ner_slices_score_entity_f1_per_subset(tmp_path: Path, ner_rows: list[dict]) -> None:
    rows = [{**r, "metadata": {"lang": "zh" if r["tokens"][0] == "张" else "en"}} for r in ner_rows]
    ds = load_dataset(write_jsonl(tmp_path / "ner.jsonl", rows), "ner")
    task = get_task("ner")
    # right on English, every entity missed on Chinese
    preds = [{"tags": list(ex["tags"]) if ex["tokens"][0] != "张" else ["O"] * len(ex["tags"]), "entities": []}
             for ex in ds.examples]
    rep = compute_slices(task, preds, ds.examples, ["LOC", "ORG", "PER"], slice_values(ds, ["metadata.lang", "script"]))
    assert rep.metric == "f1"
    assert rep.slices["metadata.lang"]["en"]["f1"] == pytest.approx(1.0)
    assert rep.slices["metadata.lang"]["zh"]["f1"] == pytest.approx(0.0)
    assert rep.slices["metadata.lang"]["zh"]["flagged"] and rep.slices["script"]["Han"]["n"] == 3
    assert "positive_label" not in rep.summary["metadata.lang"]


def test_the_report_gets_a_section_a_plot_and_metrics(tmp_path: Path) -> None:
    ds = load_dataset(_data(tmp_path), "classification")
    task = get_task("classification")
    rep = compute_slices(task, _preds(), ds.examples, ["neg", "pos"], slice_values(ds, ["length", "group"]))
    run = tmp_path / "run"
    run.mkdir()
    (run / "tuneforge.json").write_text(json.dumps({"format_version": 1, "task": "classification",
                                                    "labels": ["neg", "pos"]}), encoding="utf-8")
    write_evaluation(run / "eval-test", task, _preds(), ds, ["neg", "pos"], parts=[rep])
    metrics = json.loads((run / "eval-test" / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["slices"]) == {"length", "group"} and metrics["slices"]["length"]["short"]["n"] == 10
    assert metrics["slice_summary"]["group"]["flagged"] == ["b"]
    report = (run / "eval-test" / "report.md").read_text(encoding="utf-8")
    assert "## Slices" in report and "| b | 5 | 0.4000 | -0.2000 | ⚠ |" in report
    assert (run / "eval-test" / "slices.png").stat().st_size > 1000
    seen = read_evaluation(run)["evaluation"]
    assert seen["slices"]["report"] == "test" and seen["slices"]["slices"]["group"]["b"]["n"] == 5
    assert seen["robustness"] is None


def test_multi_label_and_qa_slices_rerun_the_tasks_scoring(tmp_path: Path, qa_rows: list[dict]) -> None:
    cls = get_task("classification")
    exs = [{"text": t, "text_pair": None, "label": y} for t, y in
           [("a", ["x"]), ("b", ["x", "y"]), ("c 1", ["y"]), ("d 2", ["x"])]]
    preds = [{"labels": ["x"]}, {"labels": ["x"]}, {"labels": ["y"]}, {"labels": ["y"]}]
    rep = compute_slices(cls, preds, exs, ["x", "y"], {"has_number": ["no", "no", "yes", "yes"]}, multi_label=True)
    assert rep.slices["has_number"]["no"]["accuracy"] == pytest.approx(0.5)  # exact match of the label set
    assert rep.slices["has_number"]["yes"]["n"] == 2 and "positive_label" not in rep.summary["has_number"]
    qa = get_task("qa")
    ds = load_dataset(write_jsonl(tmp_path / "qa.jsonl", qa_rows), "qa")
    answers = [ex["answers"]["text"][0] for ex in ds.examples]
    qpreds = [{"answer": a if "france" in ex["question"] else "nowhere", "start": 0, "end": 1, "score": 0.5}
              for a, ex in zip(answers, ds.examples, strict=True)]
    values = {"about_france": ["yes" if "france" in ex["question"] else "no" for ex in ds.examples]}
    rep = compute_slices(qa, qpreds, ds.examples, [], values)
    assert rep.metric == "f1" and rep.min_gap == pytest.approx(5.0)  # QA scores 0-100
    assert rep.slices["about_france"]["yes"]["exact_match"] == pytest.approx(100.0)
    assert rep.slices["about_france"]["no"]["f1"] == pytest.approx(0.0) and rep.slices["about_france"]["no"]["flagged"]
