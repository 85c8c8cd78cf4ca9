"""``tuneforge retrain NAME --new-data NEW``: fine-tune a registered version on new data with replay of its earlier
training data (and optionally EWC), register the result and promote it only if it beats production on the model's
fixed test set (:mod:`tuneforge.training.continual`); ``tuneforge shadow NAME --inputs LOG``: how often the
candidate agrees with production on logged inputs. docs/lifecycle.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tuneforge.cli.options import err, offline, out

__all__ = ["feedback_rows", "register", "retrain", "shadow"]


def feedback_rows(path: Path, labels: list[str] | None) -> list[dict[str, Any]]:
    """Labelled rows from assistant or playground feedback: a bundle folder holding ``feedback.jsonl`` or such a
    file itself; corrected intents (and confirmed answers) become ``{text, label}`` rows, as
    ``tuneforge solution assistant`` exports them (only labels the model knows, when ``labels`` is given)."""
    from tuneforge.errors import ConfigError
    from tuneforge.solutions.assistant.feedback import FEEDBACK_FILE, export_training_rows, read_feedback

    path = Path(path)
    if path.is_dir():
        records: list[Any] = read_feedback(path)
    elif path.is_file():
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        raise ConfigError(f"with_feedback: {path} does not exist (give an assistant bundle or its {FEEDBACK_FILE})")
    rows = export_training_rows(records, labels=labels)["intents"]
    return [{"text": r["text"], "label": r["label"]} for r in rows]


def retrain(
    name: Annotated[str, typer.Argument(help="The registered model name (see `tuneforge registry list`).")],
    new_data: Annotated[Path, typer.Option(help="New labelled data (a data file of the model's task).")],
    replay: Annotated[float, typer.Option(min=0, max=10, help="Old training examples mixed in, as a fraction of "
                                                              "the new data's size (stratified by label).")] = 0.3,
    source: Annotated[str, typer.Option("--from", help="The version fine-tuned: an alias or a version number.")]
    = "production",
    test_data: Annotated[Path | None, typer.Option(help="The fixed test set champion and challenger are compared "
                                                        "on; given once, it is kept with the model.")] = None,
    ewc: Annotated[float | None, typer.Option(min=0, help="EWC: weight lambda of the penalty keeping important "
                                                          "weights near their old values (off by default).")] = None,
    margin: Annotated[float, typer.Option(min=0, max=1, help="The most any class (or slice) may drop for the new "
                                                             "version to be promoted.")] = 0.02,
    epochs: Annotated[float | None, typer.Option(help="Passes over the mixed data (default: the old run's).")]
    = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate (default: the old run's).")]
    = None,
    eval_data: Annotated[Path | None, typer.Option(help="Dev data for early stopping (default: none).")] = None,
    with_feedback: Annotated[Path | None, typer.Option(
        help="Add corrected feedback as labelled data: an assistant bundle or its feedback.jsonl.")] = None,
    slice_by: Annotated[list[str] | None, typer.Option(help="Also compare these slices of the test set (as "
                                                            "`evaluate --slice-by`).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the replay sample and the run.")] = 42,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Keep the new run folder here as well.")]
    = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Re-train NAME (its production version, or --from) on new data mixed with a replay sample of its training
    data; the new version becomes production only if it beats the current one on the test set with no class
    dropping by more than --margin, otherwise it is the candidate. The comparison report is written into the new
    version's folder."""
    offline()
    from tuneforge import runs
    from tuneforge.settings import Settings
    from tuneforge.store.registry import default_registry_root, local_registry, os_user
    from tuneforge.training.continual import RetrainOptions
    from tuneforge.training.continual import retrain as run_retrain

    settings = Settings()
    registry = local_registry(default_registry_root(settings))
    extra: list[dict[str, Any]] = []
    if with_feedback is not None:
        labels = runs.read_manifest(registry.get(name, source).run_dir).get("labels") or None
        extra = feedback_rows(with_feedback, labels)
        err.print(f"Feedback: {len(extra)} labelled rows from {with_feedback}", highlight=False)
    opts = RetrainOptions(new_data=new_data, replay=replay, source=source, test_data=test_data, ewc=ewc,
                          margin=margin, epochs=epochs, learning_rate=learning_rate, eval_data=eval_data, seed=seed,
                          slice_by=tuple(slice_by or ()), extra_examples=extra, output=output)
    result = run_retrain(registry, name, opts, actor=os_user(), settings=settings, console=err)
    if json_:
        typer.echo(json.dumps({"version": result.version.version, "parent": result.parent.version,
                               "alias": result.alias, "message": result.message, "mix": result.mix,
                               "ewc": result.ewc, "warnings": result.warnings,
                               "comparison": result.comparison.to_json() if result.comparison else None},
                              ensure_ascii=False))
        return
    if result.comparison is not None:
        out.print(result.comparison.markdown(), markup=False, highlight=False)
    style = "green" if result.alias == "production" else "yellow"
    out.print(f"[{style}]{result.message}[/]", highlight=False)
    if result.report is not None:
        out.print(f"Report: {result.report}", highlight=False)


def shadow(
    name: Annotated[str, typer.Argument(help="The registered model name.")],
    inputs: Annotated[Path, typer.Option(help="Logged inputs, a JSONL file: one text (or {\"text\": ...}) a line.")],
    candidate: Annotated[str, typer.Option(help="The version run in shadow: an alias or a number.")] = "candidate",
    production: Annotated[str, typer.Option(help="The version it is compared with.")] = "production",
    limit: Annotated[int | None, typer.Option(min=1, help="Use the first N inputs only.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run the candidate silently on logged inputs and report how often it agrees with production."""
    offline()
    from tuneforge.inference.predictor import load_predictor
    from tuneforge.settings import Settings
    from tuneforge.store.registry import default_registry_root, local_registry
    from tuneforge.training.continual import read_inputs, shadow_compare

    registry = local_registry(default_registry_root(Settings()))
    prod, cand = registry.get(name, production), registry.get(name, candidate)
    report = shadow_compare(load_predictor(prod.run_dir), load_predictor(cand.run_dir),
                            read_inputs(inputs, limit=limit))
    report.update(production=prod.ref, candidate=cand.ref)
    if json_:
        typer.echo(json.dumps(report, ensure_ascii=False, default=str))
        return
    out.print(f"{cand.ref} agrees with {prod.ref} on {report['agreement']:.1%} of {report['inputs']} inputs "
              f"({report['disagreements']} differ)", highlight=False)
    for change, n in report["changes"].items():
        out.print(f"  {n:5d}  {change}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain)
    app.command("shadow")(shadow)
