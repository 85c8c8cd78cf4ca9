"""Evaluation reports: ``metrics.json``, ``report.md``, figures and ``predictions.jsonl`` in one folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneforge.evaluation.plots import plot_confusion_matrix, plot_per_class_f1, plot_reliability
from tuneforge.runs import read_manifest
from tuneforge.utils.fs import atomic_dir

__all__ = ["read_evaluation", "write_evaluation"]

MAX_ERRORS_SHOWN = 25


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_evaluation(out_dir: Path, task: Any, predictions: list[dict[str, Any]], dataset: Any,
                     labels: list[str], *, multi_label: bool = False, title: str = "Evaluation",
                     parts: Sequence[Any] = ()) -> dict[str, Any]:
    """Score ``predictions`` against ``dataset`` and write the report folder atomically; returns the metrics.
    ``parts`` add their own metrics and section (``metrics()``, ``markdown(folder)``): slices, robustness."""
    examples: Sequence[dict[str, Any]] = dataset.examples
    scores = task.score(predictions, examples, labels, multi_label=multi_label)
    flat = {k: v for k, v in scores.items() if not isinstance(v, dict)}
    md = [f"# {title}", "", f"Data: `{dataset.path}` ({len(examples)} examples, {dataset.fingerprint})", "",
          "| metric | value |", "|---|---|"]
    md += [f"| {k} | {_fmt(v)} |" for k, v in flat.items()]
    with atomic_dir(out_dir, overwrite=True) as tmp:
        per_class = scores.get("per_class")
        if per_class:
            head = task.label_noun
            md += ["", f"## Per {head}", "", f"| {head} | precision | recall | F1 | support |", "|---|---|---|---|---|"]
            md += [f"| {k} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['support']} |"
                   for k, v in sorted(per_class.items(), key=lambda kv: kv[1]["f1"])]
            plot_per_class_f1(per_class, tmp / "per_class_f1.png", title=f"F1 per {head}")
            md += ["", "![F1 per class](per_class_f1.png)"]
        cm = scores.get("confusion_matrix")
        if cm and len(cm["labels"]) <= 120:
            plot_confusion_matrix(cm["matrix"], cm["labels"], tmp / "confusion_matrix.png", title="Confusion matrix")
            md += ["", "## Confusion matrix", "", "![Confusion matrix](confusion_matrix.png)"]
            if len(cm["labels"]) > 2:
                pairs = sorted(((cm["matrix"][i][j], cm["labels"][i], cm["labels"][j])
                                for i in range(len(cm["labels"])) for j in range(len(cm["labels"])) if i != j),
                               reverse=True)[:10]
                confusions = [f"- {n} × `{a}` predicted as `{b}`" for n, a, b in pairs if n]
                if confusions:
                    md += ["", "Most frequent confusions:", "", *confusions]
        md += _out_of_scope_section(scores.get("out_of_scope"))
        md += _calibration_section(scores, tmp)
        for part in parts:  # evaluate --slice-by (slices.py), --robustness (robustness.py)
            scores.update(part.metrics())
            md += part.markdown(tmp)
        # a task may lay out its own examples section (generation: prompt / reference / generated tables); None
        # from it, or no such hook, gives the list of mistakes as the task describes them
        sections = getattr(task, "report_sections", None)
        own = sections(predictions, examples, dataset.lines) if sections is not None else None
        md += own if own is not None else _error_section(task, predictions, examples, dataset.lines)
        (tmp / "metrics.json").write_text(json.dumps(scores, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
        with (tmp / "predictions.jsonl").open("w", encoding="utf-8") as f:
            for i, pred in enumerate(predictions):
                line_no = dataset.lines[i] if i < len(dataset.lines) else None
                f.write(json.dumps({"line": line_no, **pred}, ensure_ascii=False) + "\n")
    return scores


def _out_of_scope_section(options: dict[str, dict[str, Any]] | None) -> list[str]:
    """What each reject option (none, msp, energy) gives on this data with the threshold fitted on dev."""
    if not options:
        return []
    cols = ["threshold", "in_scope_accuracy", "oos_precision", "oos_recall", "oos_f1", "auroc", "fpr_at_95_tpr",
            "reject_rate"]
    cols = [c for c in cols if any(c in row for row in options.values())]
    md = ["", "## Out of scope", "",
          "Each reject option with its threshold fitted on the dev set (an input scoring below it gets the "
          "out-of-scope label); `none` answers every input with its most likely class.", "",
          "| option | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    md += [f"| {name} | " + " | ".join(_fmt(row[c]) if c in row else "" for c in cols) + " |"
           for name, row in options.items()]
    return md


def _calibration_section(scores: dict[str, Any], tmp: Path) -> list[str]:
    """The expected calibration error and a reliability diagram, where the task measured them."""
    series = scores.get("reliability")
    if not series:
        return []
    plot_reliability(series, tmp / "reliability.png", title="Reliability diagram")
    ece = f"ECE {_fmt(scores.get('ece'))}"
    if "ece_uncalibrated" in scores:
        ece = (f"ECE {_fmt(scores['ece_uncalibrated'])} before temperature scaling, {_fmt(scores['ece'])} after "
               f"(temperature {_fmt(scores.get('temperature'))})")
    return ["", "## Calibration", "", f"{ece}: the gap between the score and the accuracy of the predictions, "
            "over 15 equal-width confidence bins (0 is perfectly calibrated).", "",
            "![Reliability diagram](reliability.png)"]


def _error_section(task: Any, predictions: list[dict[str, Any]], examples: Sequence[dict[str, Any]],
                   lines: Sequence[int | None]) -> list[str]:
    """The mistakes, most confident first, each as the task describes it."""
    errors = []
    for i, (pred, ex) in enumerate(zip(predictions, examples, strict=True)):
        wrong, line = task.describe(pred, ex)
        if wrong:
            errors.append((float(pred.get("score", 0.0)), i, line))
    md = ["", f"## Errors ({len(errors)} of {len(examples)})", ""]
    if errors:
        md += ["The most confident mistakes first (line numbers refer to the data file):", ""]
        for _, i, line in sorted(errors, key=lambda e: -e[0])[:MAX_ERRORS_SHOWN]:
            src = lines[i] if i < len(lines) else None
            md.append(f"- line {src}: {line}" if src else f"- {line}")
    return md


def _slices_and_robustness(reports: list[Path], first: dict[str, Any]) -> dict[str, Any]:
    """``slices`` and ``robustness`` of the first report holding each (``tuneforge evaluate --slice-by`` or
    ``--robustness`` into the run folder), each with the name of its report; None where no report has them."""
    found: dict[str, Any] = {"slices": None, "robustness": None}
    for d in reports:
        scores = first if d == reports[0] else json.loads((d / "metrics.json").read_text(encoding="utf-8"))
        name = d.name.removeprefix("eval-")
        if found["slices"] is None and scores.get("slices"):
            found["slices"] = {"report": name, "slices": scores["slices"], "summary": scores.get("slice_summary")}
        if found["robustness"] is None and scores.get("robustness"):
            found["robustness"] = {"report": name, **scores["robustness"]}
    return found


def read_evaluation(run_dir: Path) -> dict[str, Any]:
    """A trained run's manifest summary and its dev evaluation (``eval-*/metrics.json`` and ``report.md``), as
    plain data: what the API's ``GET /v1/models/{id}/evaluation`` returns. ``evaluation`` is None for a run
    trained without a validation file."""
    manifest = read_manifest(run_dir, require_weights=False)
    reports = sorted(d for d in run_dir.glob("eval-*") if (d / "metrics.json").is_file())
    evaluation = None
    if reports:
        d = reports[0]
        scores = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
        report = d / "report.md"
        evaluation = {
            "name": d.name.removeprefix("eval-"),
            "metrics": {k: v for k, v in scores.items() if not isinstance(v, dict | list)},
            "per_class": scores.get("per_class"),
            "confusion_matrix": scores.get("confusion_matrix"),
            "report_markdown": report.read_text(encoding="utf-8") if report.is_file() else None,
        }
        evaluation.update(_slices_and_robustness(reports, scores))
    training = manifest.get("training", {})
    return {"task": manifest.get("task"), "labels": manifest.get("labels", []),
            "multi_label": bool(manifest.get("multi_label")), "max_length": manifest.get("max_length"),
            "base_model": (manifest.get("base_model") or {}).get("name"), "method": manifest.get("method"),
            "training": {k: training.get(k) for k in ("steps", "epochs", "final_loss", "train_seconds",
                                                      "best_step", "stopped_early", "parameters")},
            "evaluation": evaluation}
