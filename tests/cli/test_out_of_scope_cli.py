"""Out-of-scope detection through the command line: ``train --oos-label --reject --calibrate`` records its policy,
``predict`` returns the out-of-scope label for a rejected input (with the best known label kept), ``evaluate``
reports the out-of-scope metrics and a reliability diagram; bad combinations of the options are refused by name."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import run
from tests.conftest import write_jsonl

OOS = ["paris is the capital of france", "what is the capital of germany", "where is the river in london",
       "berlin is the capital of germany", "the river of paris", "london is in the river"]


def _train(tmp_path, tiny_bert, train_rows, dev_rows, *flags):
    data = write_jsonl(tmp_path / "train.jsonl", train_rows)
    dev = write_jsonl(tmp_path / "dev.jsonl", dev_rows)
    out = tmp_path / "run"
    r = run("train", "--task", "classification", "--data", str(data), "--eval-data", str(dev), "--base-model",
            str(tiny_bert), "--epochs", "10", "--batch-size", "4", "--lr", "1e-3", "--precision", "fp32",
            "--output", str(out), *flags)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, dev, r


def test_a_trained_out_of_scope_class_is_rejected_with_its_best_known_label(tmp_path, tiny_bert, cls_rows):
    oos_rows = [{"text": t, "label": "oos"} for t in OOS]
    out, dev, r = _train(tmp_path, tiny_bert, (cls_rows + oos_rows) * 2, cls_rows + oos_rows,
                         "--oos-label", "oos", "--reject", "auto", "--calibrate")
    assert "Reject option" in r.stdout and "--reject auto chose" in " ".join(r.stdout.split())
    fitted = json.loads((out / "tuneforge.json").read_text())["confidence"]
    assert fitted["oos_label"] == "oos" and fitted["reject"] in ("msp", "energy") and fitted["calibrated"]

    r = run("predict", str(out), OOS[0], "a great film")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("oos ") and lines[1].startswith("positive "), r.stdout
    r = run("predict", str(out), "--data", str(dev), "-o", str(tmp_path / "p.jsonl"))
    assert r.returncode == 0, r.stderr
    preds = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    rejected = [p for p in preds if p["rejected"]]
    assert rejected and all(p["label"] == "oos" and p["best_label"] in ("positive", "negative") for p in rejected)
    assert all("best_label" not in p and p["label"] != "oos" for p in preds if not p["rejected"])
    assert all("ood" not in p for p in preds)  # what only scoring reads stays inside

    r = run("evaluate", str(out), "--data", str(dev), "--output", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in ("in_scope_accuracy", "oos_precision", "oos_recall", "oos_f1", "oos_auroc", "fpr_at_95_tpr",
                "reject_threshold", "ece", "ece_uncalibrated"):
        assert isinstance(m[key], float), key
    assert m["oos_recall"] == pytest.approx(sum(p["rejected"] for p in preds[12:]) / 6)
    assert m["reject_threshold"] == pytest.approx(fitted["thresholds"][fitted["reject"]])
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "## Out of scope" in report and "## Calibration" in report
    assert (tmp_path / "ev" / "reliability.png").stat().st_size > 1000


def test_out_of_scope_examples_only_in_dev_data_fit_the_threshold(tmp_path, tiny_bert, cls_rows):
    """As in the issue's bench: no training example of the out-of-scope label, some in the dev set."""
    dev_rows = cls_rows + [{"text": t, "label": "oos"} for t in OOS]
    out, dev, _ = _train(tmp_path, tiny_bert, cls_rows * 2, dev_rows, "--oos-label", "oos", "--reject", "msp",
                         "--reject-target", "0.9")
    manifest = json.loads((out / "tuneforge.json").read_text())
    assert manifest["labels"] == ["negative", "positive"]  # no class for it in the head
    fitted = manifest["confidence"]
    assert fitted["reject"] == "msp" and fitted["target"] == 0.9 and set(fitted["thresholds"]) == {"msp", "energy"}
    assert fitted["dev"]["out_of_scope"] == 6 and fitted["dev"]["msp"]["kept_correct"] >= 0.9
    dev_metrics = json.loads(next(out.glob("eval-*/metrics.json")).read_text())
    assert dev_metrics["oos_recall"] == pytest.approx(fitted["dev"]["msp"]["oos_recall"])
    r = run("evaluate", str(out), "--data", str(dev), "--output", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["reject_method"] == "msp" and set(m["out_of_scope"]) == {"none", "msp", "energy"}
    assert m["out_of_scope"]["none"]["oos_recall"] == 0.0  # the plain model never says oos
    # a label that is neither a class nor the out-of-scope label is still an error
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "label": "oops"}])
    r = run("evaluate", str(out), "--data", str(bad))
    assert r.returncode == 2 and "oops" in r.stderr


def test_a_run_without_a_reject_option_predicts_as_before(tmp_path, tiny_bert, cls_rows):
    out, _, _ = _train(tmp_path, tiny_bert, cls_rows * 2, cls_rows)
    assert "confidence" not in json.loads((out / "tuneforge.json").read_text())
    r = run("predict", str(out), "--data", str(tmp_path / "dev.jsonl"), "-o", str(tmp_path / "p.jsonl"))
    assert r.returncode == 0, r.stderr
    preds = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert all(set(p) == {"label", "score", "scores"} for p in preds)


def test_bad_combinations_are_refused_by_name(tmp_path):
    base = ["train", "--data", "x.jsonl", "--output", str(tmp_path / "o")]
    r = run(*base, "--task", "classification", "--reject", "msp", "--calibrate")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    text = " ".join(r.stderr.split())
    assert "reject: needs --oos-label" in text and "calibrate: is fitted on the dev set" in text
    r = run(*base, "--task", "ner", "--oos-label", "oos")
    assert r.returncode == 2 and "oos_label: applies to classification, not ner" in " ".join(r.stderr.split())
    r = run(*base, "--task", "classification", "--oos-label", "oos", "--reject", "sometimes")
    assert r.returncode == 2 and "reject" in r.stderr
    assert not (tmp_path / "o").exists()
