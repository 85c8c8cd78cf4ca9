"""Knowing when not to answer: the threshold fitted on synthetic scores, temperature scaling and the calibration
error, the reject contract of a classifier's predictions and its metrics, and calibration lowering the dev NLL of
a tiny model trained with ``calibrate``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console

from tests.conftest import write_jsonl
from tuneforge.tasks import get_task
from tuneforge.tasks.classification.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)
from tuneforge.tasks.classification.confidence import Confidence, fit_confidence
from tuneforge.tasks.classification.reject import fit_threshold, fpr_at_tpr, in_scope_scores, oos_auroc

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115
LABELS = ["card_arrival", "oos_free", "top_up"]


def _brute_force(s_in, correct, s_oos, target):
    """Every threshold halfway between dev scores tried one by one: the feasible one with the best F1."""
    values = np.unique(np.concatenate([s_in, s_oos]))
    best = None
    for t in [values[0] - 1e-9, *((values[1:] + values[:-1]) / 2)]:
        kept = np.mean(s_in[correct] >= t)
        if kept < target and t > values[0]:
            continue
        tp, fp = np.sum(s_oos < t), np.sum(s_in < t)
        f1 = 2 * tp / (2 * tp + fp + len(s_oos) - tp) if tp else 0.0
        if best is None or f1 > best[0]:
            best = (f1, t)
    return best


def test_without_out_of_scope_examples_the_threshold_keeps_the_target_share_of_right_answers():
    rng = np.random.default_rng(0)
    s_right = rng.uniform(0.5, 1.0, 100)
    s_wrong = rng.uniform(0.0, 0.6, 20)
    scores = np.concatenate([s_right, s_wrong])
    correct = np.r_[np.ones(100, bool), np.zeros(20, bool)]
    fit = fit_threshold(scores, correct, np.array([]), target=0.9)
    # as high as allowed: 90 of the 100 right answers stay, the 11th lowest would be lost by the next candidate
    assert np.sum(s_right >= fit.threshold) == 90 and fit.kept_correct == pytest.approx(0.9)
    lowest_ten = np.sort(s_right)[:11]
    assert lowest_ten[9] < fit.threshold < lowest_ten[10]
    assert fit.in_scope_accuracy == pytest.approx(90 / 120)  # the wrong answers rejected cost nothing
    assert fit.oos_recall is None and fit.oos_f1 is None


def test_separable_out_of_scope_scores_are_all_rejected_and_nothing_else():
    s_in = np.linspace(0.6, 1.0, 50)
    s_oos = np.linspace(0.1, 0.4, 10)
    fit = fit_threshold(s_in, np.ones(50, bool), s_oos, target=0.98)
    assert 0.4 < fit.threshold < 0.6
    assert (fit.oos_precision, fit.oos_recall, fit.oos_f1, fit.kept_correct) == (1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_overlapping_scores_maximise_f1_within_the_target(seed):
    rng = np.random.default_rng(seed)
    s_in = rng.normal(0.8, 0.1, 200)
    correct = rng.uniform(size=200) < 0.85
    s_oos = rng.normal(0.55, 0.15, 40)
    for target in (0.8, 0.95, 0.99):
        fit = fit_threshold(s_in, correct, s_oos, target=target)
        f1, t = _brute_force(s_in, correct, s_oos, target)
        assert fit.oos_f1 == pytest.approx(f1) and fit.threshold == pytest.approx(t)
        assert np.mean(s_in[correct] >= fit.threshold) >= target - 1e-12
        assert fit.oos_recall == pytest.approx(np.mean(s_oos < fit.threshold))


def test_examples_predicted_as_a_trained_out_of_scope_class_are_rejected_whatever_the_threshold():
    s_in = np.array([0.9, 0.8, 0.7, 0.6])
    s_oos = np.array([0.95, 0.3])
    fit = fit_threshold(s_in, np.ones(4, bool), s_oos, target=1.0, forced_oos=np.array([True, False]))
    # the threshold may not cost a right answer (target 1): it rejects the 0.3 one, the forced one is rejected too
    assert fit.oos_recall == 1.0 and fit.oos_precision == 1.0 and 0.3 < fit.threshold < 0.6


def test_auroc_and_fpr_at_95_tpr_of_a_score():
    is_oos = np.array([False] * 20 + [True] * 5)
    scores = np.r_[np.linspace(0.5, 1.0, 20), [0.9, 0.2, 0.1, 0.05, 0.0]]
    assert oos_auroc(scores, is_oos) == pytest.approx(1 - 16 / 100)  # one oos outranks 16 of 20 in-scope
    assert fpr_at_tpr(scores, is_oos) == pytest.approx(1 / 5)  # accepting 19 of 20 in-scope lets the 0.9 one in
    assert oos_auroc(scores[:20], is_oos[:20]) is None


def test_temperature_scaling_recovers_the_temperature_that_made_the_logits_overconfident():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, (4000, 5))
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=row) for row in p])
    logits = true_logits * 2.5  # an overconfident model: the right ranking, too sharp
    t = fit_temperature(logits, y)
    assert t == pytest.approx(2.5, rel=0.08)
    assert negative_log_likelihood(logits, y, t) < negative_log_likelihood(logits, y) - 0.1
    top = np.exp(logits / t) / np.exp(logits / t).sum(1, keepdims=True)
    raw = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    hit = raw.argmax(1) == y
    assert expected_calibration_error(top.max(1), hit) < 0.03 < expected_calibration_error(raw.max(1), hit)
    assert fit_temperature(logits[:0], y[:0]) == 1.0


def test_expected_calibration_error_and_reliability_bins_by_hand():
    conf = np.array([0.95, 0.95, 0.65, 0.65, 0.65, 0.65])
    hit = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    # bin [0.93, 1): accuracy 1 at 0.95 (gap 0.05, 2/6); bin [0.6, 0.67): accuracy 0.25 at 0.65 (gap 0.4, 4/6)
    assert expected_calibration_error(conf, hit) == pytest.approx(2 / 6 * 0.05 + 4 / 6 * 0.4)
    bins = reliability_bins(conf, hit)
    assert bins["count"][9] == 2 and bins["count"][6] == 4 and sum(bins["count"]) == 6
    assert bins["accuracy"][6] == 0.25 and bins["confidence"][9] == 0.95 and bins["accuracy"][0] is None


def _policy(**kw):
    base = {"oos_label": "oos", "reject": "msp", "thresholds": {"msp": 0.6, "energy": 2.0}}
    return Confidence(**{**base, **kw})


def test_a_rejected_prediction_keeps_its_best_known_label_and_score():
    labels = ["billing", "card"]
    logits = np.array([[3.0, 0.0], [0.2, 0.0]])
    preds = _policy().decode(logits, labels)
    sure, unsure = preds
    assert sure["label"] == "billing" and sure["rejected"] is False and "best_label" not in sure
    assert unsure["label"] == "oos" and unsure["rejected"] is True and unsure["best_label"] == "billing"
    assert unsure["score"] == pytest.approx(np.exp(0.2) / (np.exp(0.2) + 1), abs=1e-6)
    task = get_task("classification")
    assert set(task.public_prediction(unsure)) == {"label", "score", "rejected", "best_label", "scores"}
    # a run without a reject option (calibration only) answers as before, at its temperature
    plain = Confidence(temperature=2.0, calibrated=True).decode(logits, labels)[1]
    assert set(task.public_prediction(plain)) == {"label", "score", "scores"}
    assert plain["score"] == pytest.approx(np.exp(0.1) / (np.exp(0.1) + 1), abs=1e-6)


def test_a_trained_out_of_scope_class_is_never_the_best_known_label():
    labels = ["billing", "card", "oos"]
    logits = np.array([[0.0, 1.0, 4.0], [4.0, 0.0, 0.0]])
    s = in_scope_scores(logits, np.array([True, True, False]))
    assert list(s["best"]) == [1, 0] and list(s["head_oos"]) == [True, False]
    first, second = _policy(thresholds={"msp": 0.01, "energy": -99.0}).decode(logits, labels)
    assert first["rejected"] and first["label"] == "oos" and first["best_label"] == "card"
    assert not second["rejected"] and second["label"] == "billing"
    no_reject = _policy(reject="none").decode(logits, labels)[0]
    assert no_reject["label"] == "oos" and "rejected" not in no_reject  # as a plain class, as before


def test_metrics_of_the_applied_option_match_its_row_and_a_run_without_one_says_what_it_would_give():
    labels = ["a", "b"]
    logits = np.array([[3, 0], [0, 3], [1.0, 0.6], [0.1, 0], [0, 0.2], [2.5, 0]])
    refs = ["a", "b", "a", "oos", "oos", "oos"]
    examples = [{"text": "x", "label": r} for r in refs]
    for reject in ("msp", "none"):
        policy = _policy(reject=reject, thresholds={"msp": 0.6, "energy": 1.0})
        m = policy.metrics(policy.decode(logits, labels), examples)
        if reject == "msp":
            # rejected: rows 2, 3, 4 (msp 0.60- , 0.52, 0.55); one in-scope answer lost, two of three oos caught
            assert m["in_scope_accuracy"] == pytest.approx(2 / 3) and m["oos_recall"] == pytest.approx(2 / 3)
            assert m["oos_precision"] == pytest.approx(2 / 3) and m["reject_threshold"] == 0.6
            row = m["out_of_scope"]["msp"]
            assert {k: row[k] for k in ("in_scope_accuracy", "oos_recall", "oos_f1")} == \
                {k: m[k] for k in ("in_scope_accuracy", "oos_recall", "oos_f1")}
        else:
            assert m["oos_recall"] == 0.0 and m["in_scope_accuracy"] == 1.0 and m["reject_threshold"] is None
            assert m["out_of_scope"]["msp"]["oos_recall"] == pytest.approx(2 / 3)  # what msp would have given
        assert set(m["out_of_scope"]) == {"none", "msp", "energy"} and 0 <= m["oos_auroc"] <= 1
        assert "ece" in m and "fpr_at_95_tpr" in m


def test_auto_applies_the_score_that_separates_out_of_scope_inputs_on_dev():
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    rows, refs = [], []
    for i in range(60):  # in-scope: one clear class; out-of-scope: the same shape, every logit 5 lower
        z = np.zeros(3)
        z[i % 3] = 3 + rng.normal(0, 0.3)
        rows.append(z)
        refs.append(labels[i % 3])
    for i in range(20):
        z = np.zeros(3)
        z[i % 3] = 3 + rng.normal(0, 0.3)
        rows.append(z - 5)
        refs.append("oos")
    policy = fit_confidence(np.stack(rows), refs, labels, oos_label="oos", reject="auto", target=0.95,
                            calibrate=False)
    assert policy.reject == "energy" and policy.dev["energy"]["oos_f1"] == 1.0
    assert policy.dev["auto"].startswith("energy:") and set(policy.thresholds) == {"msp", "energy"}
    assert Confidence.from_manifest({"confidence": policy.to_json()}) == policy
    no_oos = fit_confidence(np.stack(rows[:60]), refs[:60], labels, oos_label="oos", reject="auto", target=0.95,
                            calibrate=False)
    assert no_oos.reject == "msp" and "no out-of-scope examples" in no_oos.dev["auto"]


@pytest.mark.parametrize("damage", [{"reject": "maybe"}, {"temperature": -1}, {"thresholds": {"msp": "high"}},
                                    {"reject": "energy", "thresholds": {"msp": 0.5}}, "not an object"])
def test_a_damaged_policy_in_the_manifest_is_refused_by_name(damage):
    raw = damage if isinstance(damage, str) else {**_policy().to_json(), **damage}
    with pytest.raises(ValueError, match="confidence"):
        Confidence.from_manifest({"confidence": raw})
    from tuneforge.errors import RunError

    with pytest.raises(RunError, match="damaged"):
        get_task("classification").for_run({"confidence": raw})


@pytest.mark.parametrize("method", ["full", "lora"])
def test_calibration_lowers_the_dev_nll_of_a_tiny_model_and_predictions_use_it(tmp_path, tiny_bert, cls_rows,
                                                                               method):
    from tuneforge.inference import load_predictor
    from tuneforge.tasks.common import softmax
    from tuneforge.tasks.encoder import forward_features
    from tuneforge.training import make_config, train

    data = write_jsonl(tmp_path / "train.jsonl", cls_rows * 2)
    dev = write_jsonl(tmp_path / "dev.jsonl", cls_rows)
    cfg = make_config({"task": "classification", "data": str(data), "eval_data": str(dev),
                       "base_model": str(tiny_bert), "output": str(tmp_path / "run"), "epochs": 4, "batch_size": 4,
                       "learning_rate": 1e-3, "precision": "fp32", "calibrate": True, "method": method})
    result = train(cfg, console=QUIET)
    fitted = result.manifest["confidence"]
    assert fitted["calibrated"] and fitted["temperature"] != 1.0 and fitted["reject"] == "none"
    assert fitted["dev"]["nll"] < fitted["dev"]["nll_uncalibrated"]
    # the NLL recomputed from the saved model's dev logits agrees with what the run recorded
    predictor = load_predictor(result.output)
    examples = [{"text": r["text"], "text_pair": None, "label": None} for r in cls_rows]
    enc = predictor.task.encode(examples, predictor.tokenizer, predictor.labels,
                                max_length=int(predictor.manifest["max_length"]), with_labels=False)
    logits = np.stack([o[0] for o in forward_features(predictor.model, enc.features,
                                                      predictor.task.collator(predictor.tokenizer))])
    y = np.array([predictor.labels.index(r["label"]) for r in cls_rows])
    t = fitted["temperature"]
    assert negative_log_likelihood(logits, y, t) == pytest.approx(fitted["dev"]["nll"], abs=1e-4)
    assert negative_log_likelihood(logits, y, t) < negative_log_likelihood(logits, y)
    # scores and probabilities served are the calibrated ones
    calibrated = softmax(logits / t)
    assert np.allclose(predictor.predict_proba(examples), calibrated, atol=1e-5)
    preds = predictor.predict([r["text"] for r in cls_rows])
    assert [p["score"] for p in preds] == pytest.approx(list(calibrated.max(1)), abs=1e-5)
    assert all(set(p) == {"label", "score", "scores"} for p in preds)  # no reject option: the usual keys
    report = next(result.output.glob("eval-*"))
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["temperature"] == pytest.approx(t, abs=1e-5) and "ece_uncalibrated" in metrics
    assert (report / "reliability.png").stat().st_size > 1000 and "## Calibration" in (report / "report.md").read_text()
