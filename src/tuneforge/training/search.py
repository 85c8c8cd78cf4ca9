"""Hyperparameter search with Optuna: TPE sampling, median pruning on the dev metric reported each evaluation,
and a study kept in a database (``sqlite:///search.db``) so an interrupted search continues where it stopped.

Each trial is an ordinary training run in ``OUTPUT/trial-N``; pruned trials' folders are removed. The best run's
path, value and parameters are written to ``OUTPUT/best.json``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from tuneforge.errors import ConfigError
from tuneforge.methods import get_method
from tuneforge.settings import Settings
from tuneforge.training.config import make_config
from tuneforge.utils.fs import atomic_write_json

__all__ = ["default_space", "search"]


def default_space(trial: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The knobs that matter most for fine-tuning, sampled for one trial."""
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [8, 16, 32]),
        "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.2),
        "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1),
    }
    if "lora_r" in get_method(values.get("method") or "full").options_class.model_fields:  # lora, adalora
        params["lora_r"] = trial.suggest_categorical("lora_r", [4, 8, 16])
    return params


def search(values: dict[str, Any], *, trials: int, storage: str | None, study_name: str, output: Path,
           space: Callable[[Any, dict[str, Any]], dict[str, Any]] = default_space, seed: int = 42,
           settings: Settings | None = None, console: Console | None = None) -> dict[str, Any]:
    """Run (or continue) a study until it holds ``trials`` finished trials; returns the best trial's summary."""
    import optuna

    from tuneforge.tasks import get_task
    from tuneforge.training.recipe import train

    console = console or Console(stderr=True)
    if not values.get("eval_data"):
        raise ConfigError("eval_data: a search needs --eval-data to compare trials")
    base_cfg = make_config({**values, "output": str(Path(output) / "trial-0")})  # validate before any trial
    metric = get_task(base_cfg.task).main_metric
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    for t in study.trials:  # trials left running by a killed search will never finish
        if t.state == optuna.trial.TrialState.RUNNING:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                       optuna.trial.TrialState.PRUNED)]
    remaining = max(0, trials - len(finished))
    console.print(f"Study {study_name!r}: {len(finished)} trials done, {remaining} to run (metric: {metric}).")

    def objective(trial: Any) -> float:
        params = space(trial, values)
        out = Path(output) / f"trial-{trial.number}"
        cfg = make_config({**values, **params, "output": str(out)})
        state = {"pruned": False}

        def on_event(ev: dict[str, Any]) -> None:
            key = f"eval_{metric}"
            if key in ev:
                trial.report(float(ev[key]), int(ev.get("step", 0)))
                if trial.should_prune():
                    state["pruned"] = True

        result = train(cfg, settings=settings, overwrite=True, console=console, on_event=on_event,
                       should_stop=lambda: state["pruned"])
        if result.interrupted or state["pruned"]:
            shutil.rmtree(out, ignore_errors=True)
            raise optuna.TrialPruned()
        trial.set_user_attr("run", str(out))
        return float((result.metrics or {})[metric])

    if remaining:
        study.optimize(objective, n_trials=remaining, catch=())
    best = study.best_trial
    summary = {"study": study_name, "storage": storage, "metric": metric, "value": best.value,
               "params": best.params, "trial": best.number, "run": best.user_attrs.get("run"),
               "trials": {s.name.lower(): sum(1 for t in study.trials if t.state == s)
                          for s in optuna.trial.TrialState}}
    atomic_write_json(Path(output) / "best.json", summary)
    return summary
