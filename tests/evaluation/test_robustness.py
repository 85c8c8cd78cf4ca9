"""Robustness: perturbations are deterministic for a seed and do what they say, NER tags stay aligned with the
perturbed tokens, and the drop is the metric on the original texts minus that on the perturbed ones."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tuneforge.console.i18n import MESSAGES
from tuneforge.data import Dataset
from tuneforge.evaluation.report import write_evaluation
from tuneforge.evaluation.robustness import (
    PERTURBATIONS,
    chinese_converter,
    perturb_example,
    perturb_text,
    robustness_report,
)
from tuneforge.tasks import get_task

TEXT = "This movie is a good, funny film; I really love it!"


def test_perturbations_are_deterministic_for_a_seed_and_differ_across_seeds() -> None:
    for name in ("typos", "synonyms"):
        a = perturb_text(name, TEXT, seed=3, index=7)
        assert a == perturb_text(name, TEXT, seed=3, index=7) and a != TEXT
        assert len({perturb_text(name, TEXT, seed=s) for s in range(8)}) > 1
    w = "wonderful"
    drops = {w[:i] + w[i + 1:] for i in range(1, len(w) - 1)}
    swaps = {w[:i] + w[i + 1] + w[i] + w[i + 2:] for i in range(1, len(w) - 2)}
    typos = {perturb_text("typos", w, seed=s) for s in range(20)}
    assert typos <= (drops | swaps) - {w} and typos & drops and typos & swaps  # one inner edit, both kinds
    assert perturb_text("uppercase", TEXT) == TEXT.upper()
    assert perturb_text("no_punctuation", TEXT) == "This movie is a good funny film I really love it"
    syn = perturb_text("synonyms", "a good film", seed=1)
    assert syn != "a good film" and syn.split()[0] == "a"
    zh = "电影非常好看，ABC 123"
    full = perturb_text("full_width", zh)
    assert full == "电影非常好看，ＡＢＣ\u3000１２３" and perturb_text("half_width", full) == "电影非常好看,ABC 123"
    assert perturb_text("full_width", "english only") == "english only"  # width: Chinese texts only


def test_ner_tokens_keep_their_tags_aligned() -> None:
    ex = {"tokens": ["john", ",", "lives", "in", "paris", "."], "tags": ["B-PER", "O", "O", "O", "B-LOC", "O"]}
    out = perturb_example(ex, PERTURBATIONS["no_punctuation"](), random.Random(0))
    assert out == {"tokens": ["john", "lives", "in", "paris"], "tags": ["B-PER", "O", "O", "B-LOC"]}
    typo = perturb_example(ex, PERTURBATIONS["typos"](), random.Random(0))
    assert len(typo["tokens"]) == len(typo["tags"]) == 6 and typo["tokens"] != ex["tokens"]
    assert ex["tokens"][1] == "," and out is not ex  # the original is left alone


class RulePredictor:
    """Predicts ``pos`` exactly when the (case-sensitive) word ``good`` is in the text."""

    task = get_task("classification")
    labels = ["neg", "pos"]
    multi_label = False

    def __init__(self) -> None:
        self.seen: list[str] = []

    def predict_examples(self, examples: list[dict[str, Any]], **_: Any) -> list[dict[str, Any]]:
        self.seen += [ex["text"] for ex in examples]
        return [{"label": "pos" if "good" in ex["text"].split() else "neg", "score": 0.9} for ex in examples]


def _ds(texts_labels: list[tuple[str, str]]) -> Dataset:
    return Dataset(path="t.jsonl", format="jsonl", task="classification",
                   examples=[{"text": t, "text_pair": None, "label": y} for t, y in texts_labels],
                   lines=list(range(1, len(texts_labels) + 1)), fingerprint="sha256:0", labels=["neg", "pos"])


def test_the_drop_is_computed_on_the_re_predicted_perturbed_texts(tmp_path: Path) -> None:
    ds = _ds([("good", "pos"), ("a good one", "pos"), ("bad", "neg"), ("a bad one", "neg"), ("good !", "pos")])
    predictor = RulePredictor()
    preds = predictor.predict_examples(ds.examples)
    rep = robustness_report(predictor, ds, preds, seed=0, perturbations=["uppercase", "lowercase", "synonyms"])
    up = rep.results["uppercase"]
    # upper case hides "good": the three positives become neg, accuracy 1.0 -> 0.4
    assert up["original"] == pytest.approx(1.0) and up["perturbed"] == pytest.approx(0.4)
    assert up["drop"] == pytest.approx(0.6) and up["changed"] == 5
    assert up["drop_on_changed"] == pytest.approx(0.6) and up["prediction_changed"] == pytest.approx(0.6)
    low = rep.results["lowercase"]
    assert low["changed"] == 0 and low["drop"] == pytest.approx(0.0)
    syn = rep.results["synonyms"]  # "good" is always in the table; "bad" too
    assert syn["changed"] == 5 and syn["perturbed"] == pytest.approx(0.4)
    assert syn["original_on_changed"] == pytest.approx(1.0)
    # only changed texts were predicted again (5 original + 5 upper + 5 synonyms)
    assert len(predictor.seen) == 15
    write_evaluation(tmp_path / "ev", predictor.task, preds, ds, predictor.labels, parts=[rep])
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text(encoding="utf-8"))["robustness"]
    assert m["metric"] == "accuracy" and m["perturbations"]["uppercase"]["drop"] == pytest.approx(0.6)
    assert "examples" not in m["perturbations"]["uppercase"]
    report = (tmp_path / "ev" / "report.md").read_text(encoding="utf-8")
    assert "## Robustness" in report and "| uppercase | 5 of 5 | 1.0000 | 0.4000 | +0.6000 |" in report
    assert "uppercase: 'good' → 'GOOD': `pos` → `neg`" in report


def test_chinese_conversion_is_skipped_with_a_reason_without_a_converter() -> None:
    conv, why = chinese_converter("traditional")
    ds = _ds([("电影很好", "pos"), ("bad", "neg")])
    predictor = RulePredictor()
    rep = robustness_report(predictor, ds, predictor.predict_examples(ds.examples), perturbations=["traditional"])
    if conv is None:
        assert "opencc or zhconv" in why and rep.results["traditional"] == {"skipped": why}
    else:
        assert conv("电影") == "電影" and rep.results["traditional"]["changed"] == 1


def test_every_perturbation_has_console_text() -> None:
    for name in PERTURBATIONS:
        assert f"perturb.{name}" in MESSAGES
