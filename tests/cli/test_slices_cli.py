"""``tuneforge evaluate --slice-by ... --robustness`` through the command line: metrics.json gets ``slices`` (every
slicer non-empty, as the acceptance script checks) and ``robustness``, report.md their sections; a slicer that
names no column is refused by name before anything is predicted."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import run
from tests.conftest import write_jsonl
from tuneforge.errors import ConfigError
from tuneforge.evaluation.evaluate import EvaluationChecks, evaluate_run


def test_evaluate_slices_by_length_and_metadata_and_reports_robustness(tmp_path, tiny_bert, cls_rows):
    rows = [{**r, "metadata": {"source": "web" if i % 3 else "app"}} for i, r in enumerate(cls_rows)]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "run"
    r = run("train", "--task", "classification", "--data", str(data), "--base-model", str(tiny_bert), "--epochs",
            "2", "--batch-size", "4", "--precision", "fp32", "--output", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    r = run("evaluate", str(out), "--data", str(data), "--slice-by", "length", "--slice-by", "metadata.source",
            "--robustness", "--output", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text(encoding="utf-8"))
    assert set(m["slices"]) == {"length", "metadata.source"} and all(m["slices"].values())
    assert {k: v["n"] for k, v in m["slices"]["metadata.source"].items()} == {"web": 8, "app": 4}
    assert m["slices"]["length"]["short"]["n"] == 12 and "accuracy" in m["slices"]["length"]["short"]
    pert = m["robustness"]["perturbations"]
    assert pert["uppercase"]["changed"] == 12 and isinstance(pert["typos"]["drop"], float)
    report = (tmp_path / "ev" / "report.md").read_text(encoding="utf-8")
    assert "## Slices" in report and "### metadata.source" in report and "## Robustness" in report

    # refused by name before anything is predicted (in-process: one more CLI start costs seconds)
    with pytest.raises(ConfigError, match="'region' is no column") as e:
        evaluate_run(out, data, output=tmp_path / "ev2", checks=EvaluationChecks(slice_by=("region",)))
    assert "metadata.source" in str(e.value) and not (tmp_path / "ev2").exists()
