"""``tuneforge drift RUN --data recent.jsonl``: has a window of inputs drifted from the model's training data?
(:mod:`tuneforge.evaluation.drift`). Exits 0 whether or not it drifted; ``--json`` prints the verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tuneforge.cli.options import offline, out

__all__ = ["drift", "register"]


def drift(
    run: Annotated[Path, typer.Argument(help="A trained encoder model folder (the --output of train), or a "
                                             "registered model: NAME, NAME@ALIAS or NAME@VERSION.")],
    data: Annotated[Path, typer.Option(help="The recent inputs: a data file of the model's task (labels not "
                                            "needed), e.g. a JSONL of {\"text\": ...} lines.")],
    reference: Annotated[Path | None, typer.Option(
        help="The data to compare with (default: the training file the run's manifest names).")] = None,
    threshold: Annotated[float | None, typer.Option(
        min=0.5, max=1.0, help="Drift when the domain classifier's ROC AUC is above this (default: the run's "
                               "drift.json, else 0.6).")] = None,
    save_threshold: Annotated[bool, typer.Option(
        "--save-threshold", help="Keep --threshold in the run folder (drift.json) as the model's own.")] = False,
    reference_size: Annotated[int, typer.Option(min=10, help="Reference examples sampled (fixed seed).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the reference sample, the folds and the permutations.")] = 0,
    json_: Annotated[bool, typer.Option("--json", help='Print {"drift": bool, "score", "method", "threshold", '
                                                       '"details"}.')] = False,
    html_file: Annotated[Path | None, typer.Option("--html", help="Also write the report as an HTML page.")] = None,
) -> None:
    """Compare a window of inputs with the training data through the model: a domain classifier's ROC AUC on
    the model's embeddings (the score), MMD, the shift of the predicted labels (PSI, chi-square), the confidence
    drop and the unknown-token and unseen-word rates."""
    offline()
    from tuneforge.cli.predict import check_run
    from tuneforge.errors import ConfigError
    from tuneforge.evaluation.drift import render_html, run_drift, write_model_threshold

    run, kept_data = _resolve(run)
    check_run(run)
    if reference is None and kept_data is not None:
        from tuneforge.evaluation.drift import reference_file

        try:
            reference_file(run)
        except ConfigError:  # the training file moved: the copy the registry keeps with the version
            reference = kept_data
    if save_threshold:
        if threshold is None:
            raise ConfigError("--save-threshold: give the threshold to keep with --threshold")
        write_model_threshold(run, threshold)
    report, ref = run_drift(run, data, reference=reference, threshold=threshold, reference_size=reference_size,
                            seed=seed)
    if html_file is not None:
        from tuneforge.utils.fs import atomic_write_text

        atomic_write_text(html_file, render_html(report, run=run.name, reference=str(ref)))
    if json_:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    _print(report)
    if html_file is not None:
        out.print(f"Wrote {html_file}", highlight=False)


def _resolve(run: Path) -> tuple[Path, Path | None]:
    """A run folder as it is; a registry reference (``sst``, ``sst@candidate``, ``sst@3``) that is no path: the
    version's folder in the offline registry, with the training data kept with it."""
    if run.exists() or len(run.parts) > 1:
        return run, None
    from tuneforge.errors import TuneforgeError
    from tuneforge.store.registry import default_registry_root, local_registry, parse_model_ref

    root = default_registry_root()
    if not root.is_dir():
        return run, None
    try:
        name, ref = parse_model_ref(str(run))
        version = local_registry(root).get(name, ref)
    except TuneforgeError:
        return run, None  # not registered either: check_run says the folder is missing
    return version.run_dir, version.train_data


def _print(report: object) -> None:
    from rich.table import Table

    from tuneforge.evaluation.drift import DriftReport

    assert isinstance(report, DriftReport)
    verdict = "[red]drift[/]" if report.drift else "[green]no drift[/]"
    out.print(f"{verdict}: {report.method} = {report.score:.3f} (threshold {report.threshold})")
    t = Table(title="checks")
    for col in ("check", "value", "threshold", "flag"):
        t.add_column(col, justify="right" if col in ("value", "threshold") else "left")
    for c in report.details["checks"]:
        value = "-" if c["value"] is None else f"{c['value']:.4f}"
        t.add_row(c["name"], value, str(c["threshold"]), "drift" if c["drift"] else "ok")
    out.print(t)


def register(app: typer.Typer) -> None:
    app.command(name="drift")(drift)
