"""Evaluate a trained run on a labelled data file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge.data import ColumnMap
from tuneforge.evaluation.report import write_evaluation
from tuneforge.inference.predictor import load_predictor
from tuneforge.tasks import load_dataset

__all__ = ["evaluate_run"]


def evaluate_run(run_dir: Path, data: Path, *, name: str | None = None, columns: ColumnMap | None = None,
                 batch_size: int = 64, strict_bio: bool = True, on_batch: Callable[[int], None] | None = None,
                 on_start: Callable[[int], None] | None = None) -> tuple[dict[str, Any], Path]:
    """Predict ``data`` with the model in ``run_dir`` and write ``run_dir/eval-<name>/`` (metrics.json,
    report.md, plots, predictions.jsonl). Returns the metrics and the report folder."""
    predictor = load_predictor(run_dir)
    ds = load_dataset(data, predictor.task.name, columns=columns, require_labels=True,
                      label_set=predictor.labels if predictor.task.closed_label_set else None,
                      multi_label=predictor.multi_label, strict_bio=strict_bio)
    if on_start:
        on_start(len(ds))
    preds = predictor.predict_examples(ds.examples, batch_size=batch_size, on_batch=on_batch)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in (name or Path(data).stem))
    out = Path(run_dir) / f"eval-{safe}"
    metrics = write_evaluation(out, predictor.task, preds, ds, predictor.labels, multi_label=predictor.multi_label,
                               title=f"Evaluation of {Path(run_dir).name} on {Path(data).name}")
    return metrics, out
