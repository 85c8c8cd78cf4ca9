"""Continual re-training of a registered model: fine-tune a version on new data mixed with a replay sample of what
it was trained on (optionally with EWC), register the result as a new version, and let the fixed test set decide
whether it replaces production (champion / challenger) or waits as ``candidate``.

The run is an ordinary :func:`tuneforge.training.train` run, the one code path of ``tuneforge train``: its base
model is the old version's folder (warm start from its weights; an adapter run is merged into its base first,
as ``--base-model RUN`` does), its configuration the old version's own (method, max_length, learning rate ...)
with the mixed data. The head keeps its trained weights while the label set is unchanged; when the data brings
new classes the head is sized for them and fitted on frozen features first (``warm_start_head``, LP-FT).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from tuneforge import runs
from tuneforge.data import ColumnMap
from tuneforge.errors import ConfigError, NotFoundError
from tuneforge.settings import Settings
from tuneforge.store.registry import PRODUCTION, ModelVersion, Registry
from tuneforge.tasks import get_task, load_dataset
from tuneforge.training.config import TrainConfig, make_config
from tuneforge.training.continual.compare import Comparison, compare_metrics, write_comparison
from tuneforge.training.continual.replay import Mix, history_examples, mix_replay, write_examples

__all__ = ["CANDIDATE", "RetrainOptions", "RetrainResult", "retrain"]

CANDIDATE = "candidate"
#: options of the old run's configuration that a re-training run does not carry over (they name files of the old
#: run, or need a dev file the re-training run may not have)
_RESET = ("data", "eval_data", "output", "base_model", "columns", "delimiter", "encoding", "unlabeled_data",
          "distill_from", "resume")


@dataclass
class RetrainOptions:
    """What a re-training run does (the CLI's and the service's options)."""

    new_data: Path
    replay: float = 0.3
    source: str | int | None = PRODUCTION  # the version (alias or number) fine-tuned
    test_data: Path | None = None
    ewc: float | None = None
    margin: float = 0.02
    epochs: float | None = None
    learning_rate: float | None = None
    eval_data: Path | None = None
    seed: int = 42
    slice_by: tuple[str, ...] = ()
    extra_examples: list[dict[str, Any]] = field(default_factory=list)  # corrected feedback rows
    output: Path | None = None  # keep the run folder here too (default: a temporary folder)

    def problems(self) -> list[str]:
        out = []
        if not 0 <= self.replay <= 10:
            out.append(f"replay: must be between 0 and 10 (a fraction of the new data's size), not {self.replay}")
        if self.ewc is not None and self.ewc < 0:
            out.append(f"ewc: lambda must be 0 or more, not {self.ewc}")
        if not 0 <= self.margin < 1:
            out.append(f"margin: must be between 0 and 1, not {self.margin}")
        if not Path(self.new_data).is_file():
            out.append(f"new_data: {self.new_data} does not exist")
        if self.test_data is not None and not Path(self.test_data).is_file():
            out.append(f"test_data: {self.test_data} does not exist")
        return out


@dataclass
class RetrainResult:
    version: ModelVersion
    parent: ModelVersion
    alias: str  # production or candidate
    comparison: Comparison | None
    mix: dict[str, Any]
    message: str
    ewc: dict[str, Any] | None = None
    report: Path | None = None
    warnings: list[str] = field(default_factory=list)


def _old_examples(version: ModelVersion, manifest: dict[str, Any], task: str) -> tuple[list[dict[str, Any]], str]:
    """The old version's training examples (the registry's copy, else the file its manifest names) and where they
    came from; none (and a note) when neither is at hand."""
    config = manifest.get("config") or {}
    path = version.train_data
    if path is None or not Path(path).is_file():
        named = (manifest.get("data") or {}).get("train", {}).get("path") or config.get("data")
        path = Path(named) if named and Path(named).is_file() else None
    if path is None:
        return [], "no training data is kept with this version"
    cols = ColumnMap(**{k: v for k, v in (config.get("columns") or {}).items() if v})
    ds = load_dataset(path, task, require_labels=True, columns=cols, delimiter=config.get("delimiter"),
                      encoding=config.get("encoding"))
    return list(ds.examples), str(path)


def _train_values(manifest: dict[str, Any], *, base: Path, data: Path, output: Path, opts: RetrainOptions,
                  new_labels: bool) -> TrainConfig:
    old = dict(manifest.get("config") or {})
    values = {k: v for k, v in old.items() if k in TrainConfig.model_fields and k not in _RESET}
    values.update(task=manifest["task"], data=str(data), output=str(output), base_model=str(base), seed=opts.seed)
    if opts.eval_data is not None:
        values["eval_data"] = str(opts.eval_data)
    else:  # a dev-fitted calibration or reject option needs a dev file: not carried over without one
        values.update(reject="none", calibrate=False, early_stopping_patience=None)
    if opts.epochs is not None:
        values["epochs"] = opts.epochs
    if opts.learning_rate is not None:
        values["learning_rate"] = opts.learning_rate
    if new_labels and manifest["task"] and get_task(manifest["task"]).sequence_level:
        values["warm_start_head"] = True  # a head resized for new classes starts from a probe, not at random
    return make_config(values, f"the configuration of {base}")


def _ewc_callback(version: ModelVersion, old: list[dict[str, Any]], lam: float, seed: int) -> Any:
    from tuneforge.inference.predictor import load_predictor
    from tuneforge.training.continual.ewc import EWCCallback, fisher_diagonal

    pred = load_predictor(version.run_dir)
    enc = pred.task.encode(old, pred.tokenizer, pred.labels, max_length=int(pred.manifest["max_length"]),
                           multi_label=pred.multi_label)
    features = [f for f in enc.features if f.get("labels") != -100]
    fisher = fisher_diagonal(pred.model, features, pred.task.collator(pred.tokenizer), seed=seed)
    return EWCCallback(fisher, lam)


def _evaluate(run_dir: Path, data: Path, out: Path, slice_by: tuple[str, ...]) -> dict[str, Any]:
    from tuneforge.evaluation import evaluate_run
    from tuneforge.evaluation.evaluate import EvaluationChecks

    metrics, _ = evaluate_run(run_dir, data, output=out, checks=EvaluationChecks(slice_by=slice_by))
    return metrics


def _champion(registry: Registry, name: str) -> ModelVersion | None:
    try:
        return registry.get(name, PRODUCTION)
    except NotFoundError:  # nothing in production yet
        return None


def retrain(registry: Registry, name: str, opts: RetrainOptions, *, actor: str, settings: Settings | None = None,
            console: Console | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
            should_stop: Callable[[], bool] | None = None, callbacks: Sequence[Any] = ()) -> RetrainResult:
    """Fine-tune ``name@opts.source`` on the new data with replay, register the run as a new version (parent: the
    old one) and give it ``production`` when it beats the champion on the fixed test set, else ``candidate``
    (with the comparison report in the version's folder)."""
    from tuneforge.training.recipe import train

    problems = opts.problems()
    if problems:
        raise ConfigError(problems, hint="See `tuneforge retrain --help`.")
    console = console or Console(stderr=True)
    settings = settings or Settings()
    parent = registry.get(name, opts.source)
    manifest = runs.read_manifest(parent.run_dir)
    task = get_task(manifest["task"])
    warnings: list[str] = []
    if opts.test_data is not None:
        kept = registry.set_test_data(name, Path(opts.test_data))
        console.print(f"The test set of {name} is now {opts.test_data} (kept as {kept}; later retrains reuse it).")
    test_data = registry.test_data(name)

    old, old_source = _old_examples(parent, manifest, task.name)
    if not old and opts.replay > 0:
        warnings.append(f"{parent.ref}: {old_source}: nothing to replay, the run trains on the new data only")
    new_ds = load_dataset(opts.new_data, task.name, require_labels=True)
    new = list(new_ds.examples) + list(opts.extra_examples)
    mix: Mix = mix_replay(new, old, fraction=opts.replay if old else 0.0, seed=opts.seed)
    old_labels = set(manifest.get("labels") or []) if task.sequence_level else set()
    mix_labels = {str(lab) for ex in mix.examples for lab in
                  (ex["label"] if isinstance(ex.get("label"), list) else [ex.get("label")]) if lab is not None}
    if task.sequence_level and old_labels - mix_labels:
        lost = sorted(old_labels - mix_labels)
        warnings.append(f"{len(lost)} class(es) of {parent.ref} have no example in the new data or the replay "
                        f"sample, so the new version cannot predict them: {', '.join(lost[:10])}"
                        f"{' ...' if len(lost) > 10 else ''} (raise --replay or add examples)")
    for w in warnings:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"Re-training {parent.ref} on {mix.n_new} new examples + {mix.n_replay} replayed "
                  f"({opts.replay:g} of the new data's size, from {mix.n_old} old)"
                  + (f" with EWC (lambda {opts.ewc:g})" if opts.ewc else ""))

    work = Path(tempfile.mkdtemp(prefix=f"tuneforge-retrain-{name}-"))
    try:
        data = write_examples(work / "train.jsonl", mix.examples)
        history = write_examples(work / "history.jsonl", history_examples(old, new))
        out = Path(opts.output) if opts.output is not None else work / "run"
        config = _train_values(manifest, base=parent.run_dir, data=data, output=out, opts=opts,
                               new_labels=bool(task.sequence_level and mix_labels - old_labels))
        extra = list(callbacks)
        ewc_cb = None
        if opts.ewc:
            ewc_cb = _ewc_callback(parent, old or new, opts.ewc, opts.seed)
            extra.append(ewc_cb)
        result = train(config, settings=settings, console=console, on_event=on_event, should_stop=should_stop,
                       callbacks=extra)
        if result.interrupted:
            raise ConfigError("the re-training run was stopped before it finished; nothing was registered")
        if ewc_cb is not None and not ewc_cb.summary.get("tensors"):
            warnings.append(f"ewc: no weight of the new run matches {parent.ref}'s (method {config.method}), so "
                            "the penalty covered nothing")
            console.print(f"[yellow]warning:[/] {warnings[-1]}")
        comparison, report = _compare(registry, name, parent, out, test_data, opts, work, task)
        reason = f"retrain of v{parent.version}"
        if comparison is not None:
            reason += f": {comparison.decision} ({'; '.join(comparison.reasons)})"
        version = registry.register(name, out, actor=actor, reason=reason, train_data=history,
                                    parent=parent.version)
        alias = PRODUCTION if comparison is not None and comparison.promote else CANDIDATE
        if comparison is not None:
            comparison.challenger_version = version.version
        registry.set_alias(name, alias, version.version, actor=actor, reason=reason,
                           metrics=version.metrics)
        version = registry.get(name, version.version)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if comparison is None:
        message = (f"{version.ref} is {CANDIDATE}: {name} has no test set, so it cannot be compared with "
                   f"production (give --test-data once; it is kept with the model)")
    else:
        message = f"{version.ref} is {alias}: " + "; ".join(comparison.reasons)
    return RetrainResult(version=version, parent=parent, alias=alias, comparison=comparison, mix=mix.summary(),
                         message=message, ewc=ewc_cb.summary if ewc_cb is not None else None,
                         report=version.run_dir / "comparison.md" if comparison is not None else None,
                         warnings=warnings)


def _compare(registry: Registry, name: str, parent: ModelVersion, out: Path, test_data: Path | None,
             opts: RetrainOptions, work: Path, task: Any) -> tuple[Comparison | None, Path | None]:
    """Evaluate the challenger (into its run folder, ``eval-test``) and the champion (production) on the test set
    and compare; ``None`` without a test set."""
    if test_data is None:
        return None, None
    challenger = _evaluate(out, test_data, out / "eval-test", opts.slice_by)
    champ = _champion(registry, name)
    champion = _evaluate(champ.run_dir, test_data, work / "champion", opts.slice_by) if champ else None
    comparison = compare_metrics(champion, challenger, metric=task.main_metric, margin=opts.margin,
                                 greater_is_better=getattr(task, "greater_is_better", True))
    comparison.champion_version = champ.version if champ else None
    comparison.parent_version = parent.version
    comparison.test_data = str(test_data)
    write_comparison(comparison, out)
    return comparison, out / "comparison.md"
