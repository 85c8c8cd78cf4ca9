"""Evaluate a trained run, or a base model as it is (zero-shot), on a labelled data file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data import ColumnMap
from tuneforge.errors import ConfigError, RunError
from tuneforge.evaluation.report import write_evaluation
from tuneforge.inference.predictor import load_base_predictor, load_predictor
from tuneforge.tasks import load_dataset

__all__ = ["EvaluationChecks", "evaluate_base_model", "evaluate_predictor", "evaluate_run", "report_folder"]


def report_folder(output: str | Path) -> Path:
    """``output`` as an evaluation's report folder: a new or empty folder, or an earlier report (replaced); any
    other existing folder is refused rather than replaced (a run folder, a home folder ...)."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} is a file, not a folder for the evaluation report.",
                       hint="Choose a new folder with --output.")
    if out.is_dir() and any(out.iterdir()) and not (out / "metrics.json").is_file():
        raise RunError(f"{out} already holds files that are not an evaluation report; they would be replaced.",
                       hint="Choose a new or empty folder with --output.")
    return out


def evaluate_predictor(predictor: Any, data: Path, out: Path, *, title: str, columns: ColumnMap | None = None,
                       batch_size: int = 64, strict_bio: bool = True, on_batch: Callable[[int], None] | None = None,
                       on_start: Callable[[int], None] | None = None,
                       options: dict[str, Any] | None = None, checks: EvaluationChecks | None = None) -> dict[str, Any]:
    """Predict ``data`` with ``predictor`` and write the report folder ``out`` (metrics.json, report.md, plots,
    predictions.jsonl); returns the metrics. ``options`` go to the task's ``predict`` (``max_new_tokens``);
    ``checks``: slices and robustness to add (:class:`EvaluationChecks`)."""
    ds = load_dataset(data, predictor.task.name, columns=columns, require_labels=True,
                      label_set=_allowed_labels(predictor) if predictor.task.closed_label_set else None,
                      multi_label=predictor.multi_label, strict_bio=strict_bio)
    checks = checks or EvaluationChecks()
    slice_values = checks.slice_values(ds)  # a bad --slice-by is refused before anything is predicted
    if on_start:
        on_start(len(ds))
    preds = predictor.predict_examples(ds.examples, batch_size=batch_size, on_batch=on_batch, **(options or {}))
    parts = checks.parts(predictor, ds, preds, slice_values, batch_size=batch_size, options=options)
    return write_evaluation(out, predictor.task, preds, ds, predictor.labels, multi_label=predictor.multi_label,
                            title=title, parts=parts)


@dataclass(frozen=True)
class EvaluationChecks:
    """What an evaluation adds to the task's metrics: ``slice_by`` (slicers, :mod:`.slices`) with ``slice_min_gap``
    (None: the slicer's default), and ``robustness`` (perturbations seeded by ``robustness_seed``,
    :mod:`.robustness`)."""

    slice_by: tuple[str, ...] = ()
    slice_min_gap: float | None = None
    robustness: bool = False
    robustness_seed: int = 0

    def __post_init__(self) -> None:
        if self.slice_min_gap is not None and self.slice_min_gap < 0:
            raise ConfigError(f"slice_min_gap: must be 0 or more, got {self.slice_min_gap}")

    def slice_values(self, ds: Any) -> dict[str, list[str]]:
        if not self.slice_by:
            return {}
        from tuneforge.evaluation.slices import slice_values

        return slice_values(ds, self.slice_by)

    def parts(self, predictor: Any, ds: Any, preds: list[dict[str, Any]], values: dict[str, list[str]], *,
              batch_size: int, options: dict[str, Any] | None) -> list[Any]:
        parts: list[Any] = []
        if values:
            from tuneforge.evaluation.slices import compute_slices

            parts.append(compute_slices(predictor.task, preds, ds.examples, list(predictor.labels), values,
                                        multi_label=predictor.multi_label, min_gap=self.slice_min_gap))
        if self.robustness:
            from tuneforge.evaluation.robustness import robustness_report

            parts.append(robustness_report(predictor, ds, preds, seed=self.robustness_seed, batch_size=batch_size,
                                           options=options))
        return parts


def _allowed_labels(predictor: Any) -> list[str]:
    """The labels evaluation data may hold: the model's, and those its task also scores (a run's out-of-scope
    label, which no class of its head may have)."""
    labels = list(predictor.labels)
    extra = getattr(predictor.task, "reference_labels", None)
    return list(extra(labels)) if extra is not None else labels


def _options(predictor: Any, max_new_tokens: int | None) -> dict[str, Any]:
    if max_new_tokens is None:
        return {}
    if not predictor.task.generative:
        raise ConfigError(f"max_new_tokens: applies to generation models, not {predictor.task.name}")
    return {"max_new_tokens": max_new_tokens}


def evaluate_run(run_dir: Path, data: Path, *, name: str | None = None, output: Path | None = None,
                 columns: ColumnMap | None = None, batch_size: int = 64, strict_bio: bool = True,
                 on_batch: Callable[[int], None] | None = None, on_start: Callable[[int], None] | None = None,
                 max_new_tokens: int | None = None,
                 checks: EvaluationChecks | None = None, backend: str = "torch") -> tuple[dict[str, Any], Path]:
    """Predict ``data`` with the model in ``run_dir`` and write the report folder: ``output`` when given, else
    ``run_dir/eval-<name>/`` (``name`` defaults to the data file's). Returns the metrics and the report folder.
    ``checks``: slices and robustness (:class:`EvaluationChecks`); ``backend``: what runs the model (a registered
    inference backend: torch, onnx, onnx-int8 ...), as the service would serve it."""
    out = report_folder(output) if output is not None else None
    if backend == "torch":
        predictor = load_predictor(run_dir)
    else:
        from tuneforge.inference.backends import load_run_predictor

        predictor = load_run_predictor(run_dir, backend)
    if out is None:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in (name or Path(data).stem))
        out = Path(run_dir) / f"eval-{safe}"
    metrics = evaluate_predictor(predictor, data, out, title=f"Evaluation of {Path(run_dir).name} on {Path(data).name}",
                                 columns=columns, batch_size=batch_size, strict_bio=strict_bio, on_batch=on_batch,
                                 on_start=on_start, options=_options(predictor, max_new_tokens), checks=checks)
    _refresh_card(Path(run_dir), out)
    return metrics, out


def _refresh_card(run_dir: Path, report: Path) -> None:
    """A report written into the run folder (the default) joins the run's model card (README.md)."""
    from tuneforge.evaluation.card import write_card
    from tuneforge.runs import has_manifest

    if report.resolve().parent == run_dir.resolve() and has_manifest(run_dir):  # not an ONNX export folder
        write_card(run_dir)


def evaluate_base_model(base_model: str, task: str, data: Path, *, output: Path, columns: ColumnMap | None = None,
                        batch_size: int = 64, on_batch: Callable[[int], None] | None = None,
                        on_start: Callable[[int], None] | None = None,
                        max_new_tokens: int | None = None,
                        checks: EvaluationChecks | None = None) -> tuple[dict[str, Any], Path]:
    """Evaluate a base model as it is (zero-shot: :func:`~tuneforge.inference.predictor.load_base_predictor`) on
    ``data`` for a generative ``task``, with the same report as a run's, written to ``output``."""
    out = report_folder(output)
    predictor = load_base_predictor(base_model, task)
    title = f"Evaluation of the base model {predictor.manifest['name']} (zero-shot) on {Path(data).name}"
    metrics = evaluate_predictor(predictor, data, out, title=title, columns=columns, batch_size=batch_size,
                                 on_batch=on_batch, on_start=on_start, options=_options(predictor, max_new_tokens),
                                 checks=checks)
    return metrics, out
