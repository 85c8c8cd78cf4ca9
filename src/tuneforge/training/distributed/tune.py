"""Hyperparameter search on Ray Tune: ``tuneforge search --executor ray --trials N --parallel P``.

The search space is the local search's (:func:`tuneforge.training.search.default_space`, define-by-run), sampled
by Optuna's TPE through Ray Tune's ``OptunaSearch``; ASHA stops trials whose dev metric trails at an evaluation
(each evaluation of a trial is one Tune iteration). Every trial is an ordinary TuneForge training (the recipe)
in a Tune trial actor with one CPU (``resources_per_trial``), ``P`` at a time. A finished trial reports its run
folder as its checkpoint, so the best one reaches ``OUTPUT/trial-N`` even when it trained on another node;
``OUTPUT/best.json`` has the local search's summary. Per-trial events (started, each evaluation, finished,
stopped) go to ``on_event``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from tuneforge.errors import ConfigError, RunError
from tuneforge.settings import Settings
from tuneforge.training.config import make_config
from tuneforge.training.distributed.cluster import absolute_paths, connect, storage_location
from tuneforge.training.search import default_space
from tuneforge.utils.fs import atomic_write_json

__all__ = ["search_on_ray"]

SCORE = "score"


def _trial(params: dict[str, Any], *, values: dict[str, Any], metric: str, settings: Settings) -> None:
    """One Tune trial: the recipe with the sampled ``params``; each evaluation is reported (ASHA's iterations),
    the finished run folder is the trial's checkpoint."""
    from ray import tune

    from tuneforge.training.recipe import train

    root = Path(tempfile.mkdtemp(prefix="tuneforge-trial-"))
    try:
        cfg = make_config({**values, **params, "output": str(root / "run")}, "the search's options")
        last: dict[str, float] = {}

        def on_event(ev: dict[str, Any]) -> None:
            key = f"eval_{metric}"
            if key in ev:
                last[SCORE] = float(ev[key])
                tune.report({SCORE: last[SCORE], "step": int(ev.get("step", 0)), "done_training": False})

        result = train(cfg, settings=settings, console=Console(stderr=True, quiet=True), on_event=on_event)
        value = float((result.metrics or {}).get(metric, last.get(SCORE, float("nan"))))
        tune.report({SCORE: value, "done_training": True, "steps": result.manifest["training"]["steps"]},
                    checkpoint=tune.Checkpoint.from_directory(str(root / "run")))
    finally:
        shutil.rmtree(root, ignore_errors=True)


class _Space:
    """The local search's space as OptunaSearch's define-by-run function (a picklable object: Tune saves its
    searcher with the experiment's state)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __call__(self, trial: Any) -> None:
        default_space(trial, self.values)  # the suggest_* calls are what OptunaSearch records


#: the driver's listeners of running searches, by key: a Tune callback is pickled with the run's configuration,
#: so it carries the key and finds its console and ``on_event`` here (it runs in the driver's process)
_LISTENERS: dict[str, tuple[Console, Callable[[dict[str, Any]], None] | None]] = {}


def _events(key: str) -> Any:
    """A Tune callback (on the driver) that reports each trial's start, evaluations and end."""
    from ray import tune

    def emit(event: dict[str, Any]) -> None:
        on_event = _LISTENERS.get(key, (None, None))[1]
        if on_event is not None:
            on_event(event)

    def say(text: str) -> None:
        console = _LISTENERS.get(key, (None, None))[0]
        if console is not None:
            console.print(text, highlight=False)

    class TrialEvents(tune.Callback):  # type: ignore[misc]  # ray is untyped
        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            emit({"type": "trial", "trial": trial.trial_id, "status": "started", "params": dict(trial.config)})

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                            **info: Any) -> None:
            emit({"type": "trial", "trial": trial.trial_id, "status": "evaluated", SCORE: result.get(SCORE),
                  "step": result.get("step"), "iteration": result.get("training_iteration")})

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            score = (trial.last_result or {}).get(SCORE)
            status = "finished" if (trial.last_result or {}).get("done_training") else "stopped"
            shown = "-" if score is None else f"{score:.4f}"
            say(f"trial {trial.trial_id}: {status}, {SCORE} {shown} with {trial.config}")
            emit({"type": "trial", "trial": trial.trial_id, "status": status, SCORE: score})

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            say(f"trial {trial.trial_id} failed (see its log in the Tune storage)")
            emit({"type": "trial", "trial": trial.trial_id, "status": "failed"})

    return TrialEvents()


def search_on_ray(values: dict[str, Any], *, trials: int, parallel: int, output: Path, seed: int = 42,
                  storage: str | None = None, settings: Settings | None = None, console: Console | None = None,
                  on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run ``trials`` trials, ``parallel`` at a time, on Ray Tune; keep the best run in ``output/trial-N`` and
    return the summary written to ``output/best.json`` (the local search's keys)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from tuneforge.tasks import get_task

    settings = settings or Settings()
    console = console or Console(stderr=True)
    if not values.get("eval_data"):
        raise ConfigError("eval_data: a search needs --eval-data to compare trials")
    if trials < 1 or parallel < 1:
        raise ConfigError("trials, parallel: must be 1 or more")
    values = absolute_paths({k: v for k, v in values.items() if k not in ("executor", "workers")})
    output = Path(output).resolve()
    base_cfg = make_config({**values, "output": str(output / "trial-0")}, "the search's options")  # validate first
    metric = get_task(base_cfg.task).main_metric
    mode = "max" if getattr(get_task(base_cfg.task), "greater_is_better", True) else "min"
    output.mkdir(parents=True, exist_ok=True)
    storage_path, filesystem = storage_location(storage, output / "ray-tune")
    name = f"search-{hashlib.sha256(f'{output}{time.time()}'.encode()).hexdigest()[:8]}"
    connect()
    searcher = OptunaSearch(space=_Space(values), metric=SCORE, mode=mode, seed=seed)
    scheduler = ASHAScheduler(metric=SCORE, mode=mode, time_attr="training_iteration", grace_period=1,
                              reduction_factor=2, max_t=1000)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, values=values, metric=metric, settings=settings), {"cpu": 1})
    console.print(f"Ray Tune: {trials} trials, {parallel} at a time, Optuna TPE + ASHA on dev {metric}.")
    tuner = tune.Tuner(trainable,
                       tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=trials,
                                                   max_concurrent_trials=parallel,
                                                   reuse_actors=True),  # torch & co. imported once per actor
                       run_config=tune.RunConfig(name=name, storage_path=storage_path, storage_filesystem=filesystem,
                                                 callbacks=[_events(name)], verbose=0,
                                                 checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    t0 = time.time()
    _LISTENERS[name] = (console, on_event)
    try:
        grid = tuner.fit()
    finally:
        _LISTENERS.pop(name, None)
    results: list[Any] = [grid[i] for i in range(len(grid))]  # ray types its results loosely
    finished = [r for r in results if r.error is None and r.metrics.get("done_training") and r.checkpoint is not None]
    if not finished:
        raise RunError(f"No trial of the search finished ({len(grid.errors)} failed).",
                       hint=f"See the trials' logs under {storage_path}/{name}.")
    best = max(finished, key=lambda r: r.metrics[SCORE]) if mode == "max" else \
        min(finished, key=lambda r: r.metrics[SCORE])
    number = next(i for i, r in enumerate(results) if r is best)
    run = output / f"trial-{number}"
    shutil.rmtree(run, ignore_errors=True)
    best.checkpoint.to_directory(str(run))
    stopped = sum(1 for r in results if r.error is None and not r.metrics.get("done_training"))
    summary = {"executor": "ray", "study": name, "storage": f"{storage_path}/{name}", "metric": metric,
               "value": best.metrics[SCORE], "params": {k: best.config[k] for k in sorted(best.config)},
               "trial": number, "run": str(run), "parallel": parallel, "seconds": round(time.time() - t0, 1),
               "trials": {"complete": len(finished), "pruned": stopped, "fail": len(grid.errors)}}
    atomic_write_json(output / "best.json", summary)
    if filesystem is None:
        shutil.rmtree(Path(storage_path) / name, ignore_errors=True)
    return summary
