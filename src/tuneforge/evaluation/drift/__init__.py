"""Drift: is a window of a model's inputs still like the data it was trained on? See :mod:`.report` for what
is measured and :mod:`.stats` for the statistics; :func:`run_drift` reports on files, as ``tuneforge drift``
does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.evaluation.drift.html import render_html
from tuneforge.evaluation.drift.report import (
    DEFAULT_THRESHOLD,
    METHOD,
    THRESHOLDS_FILE,
    DriftModel,
    DriftReport,
    RunModel,
    drift_report,
    example_text,
    model_threshold,
    reference_file,
    write_model_threshold,
)

__all__ = ["DEFAULT_THRESHOLD", "METHOD", "THRESHOLDS_FILE", "DriftModel", "DriftReport", "RunModel",
           "drift_report", "example_text", "load_examples", "model_threshold", "reference_file", "reference_key",
           "render_html", "run_drift", "write_model_threshold"]


def load_examples(path: Path, task: Any) -> list[dict[str, Any]]:
    """The examples of a data file for ``task`` (labels not needed)."""
    from tuneforge.tasks import load_dataset

    return list(load_dataset(path, task.name, require_labels=False).examples)


def reference_key(path: Path) -> tuple[Any, ...]:
    """What identifies a reference file's contents for the reference cache."""
    st = Path(path).stat()
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def run_drift(run_dir: Path, data: Path, *, reference: Path | None = None, threshold: float | None = None,
              model: RunModel | None = None, reference_size: int = 1000, seed: int = 0,
              permutations: int = 200) -> tuple[DriftReport, Path]:
    """The drift of the inputs in ``data`` against the run's training file (``reference`` instead when given),
    with ``threshold``, else the run's own (``drift.json``), else :data:`DEFAULT_THRESHOLD`. Returns the report
    and the reference file used."""
    run_dir = Path(run_dir)
    ref_path = Path(reference) if reference is not None else reference_file(run_dir)
    model = model or RunModel(run_dir)
    limit = threshold if threshold is not None else model_threshold(run_dir)
    report = drift_report(model, load_examples(ref_path, model.task), load_examples(data, model.task),
                          threshold=DEFAULT_THRESHOLD if limit is None else limit, reference_size=reference_size,
                          seed=seed, permutations=permutations, reference_key=reference_key(ref_path),
                          cache=model.reference_cache)
    report.details["reference"] = str(ref_path)
    return report, ref_path
