"""``tuneforge search``: hyperparameter search, here (Optuna: TPE, median pruning, a resumable study) or on a Ray
cluster (``--executor ray``: Ray Tune with Optuna's sampler and ASHA, ``--parallel`` trials at a time)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from tuneforge.cli.options import TASK_HELP, err, offline, out
from tuneforge.errors import ConfigError

__all__ = ["search"]


def search(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the trials' runs and best.json.")],
    trials: Annotated[int, typer.Option(help="Finished trials the study should hold.")] = 10,
    storage: Annotated[str | None, typer.Option(help="Optuna storage, e.g. sqlite:///search.db (resumable); "
                                                     "default: OUTPUT/search.db. With --executor ray: Ray Tune's "
                                                     "storage, a shared folder or s3://bucket/prefix (default: "
                                                     "OUTPUT/ray-tune).")] = None,
    study_name: Annotated[str, typer.Option(help="Study name inside the storage.")] = "tuneforge",
    config: Annotated[Path | None, typer.Option(help="A YAML run config (flags override it).")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help=TASK_HELP)] = None,
    data: Annotated[Path | None, typer.Option(help="Training data.")] = None,
    eval_data: Annotated[Path | None, typer.Option(help="Dev data (required: trials are compared on it).")] = None,
    base_model: Annotated[str | None, typer.Option(help="Base model name or folder.")] = None,
    method: Annotated[str | None, typer.Option(help="Tuning method (lora also searches lora_r).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs per trial.")] = None,
    executor: Annotated[Literal["local", "ray"], typer.Option(help="local: trials one after another in this "
                                                                   "process; ray: Ray Tune on RAY_ADDRESS (else "
                                                                   "a Ray started here), Optuna TPE + ASHA "
                                                                   "(docs/ray.md).")] = "local",
    parallel: Annotated[int, typer.Option(min=1, help="ray: trials trained at once (one CPU each).")] = 1,
) -> None:
    """Hyperparameter search with Optuna (TPE, median pruning, resumable study), or on Ray Tune with
    --executor ray; prints the best run."""
    offline()
    from tuneforge.training import load_config_file

    values: dict[str, Any] = load_config_file(config) if config else {}
    values.update({k: v for k, v in dict(task=task, data=data, eval_data=eval_data, base_model=base_model,
                                         method=method, epochs=epochs).items() if v is not None})
    missing = [f"{k}: required (--{k.replace('_', '-')})" for k in ("task", "data", "eval_data") if k not in values]
    if missing:
        raise ConfigError(missing, hint="See `tuneforge search --help`.")
    if parallel > 1 and executor != "ray":
        raise ConfigError("parallel: trials run in parallel with --executor ray")
    output.mkdir(parents=True, exist_ok=True)
    if executor == "ray":
        from tuneforge.training.distributed import search_on_ray

        best = search_on_ray(values, trials=trials, parallel=parallel, output=output, storage=storage, console=err)
    else:
        from tuneforge.training.search import search as run_search

        storage = storage or f"sqlite:///{(output / 'search.db').resolve()}"
        best = run_search(values, trials=trials, storage=storage, study_name=study_name, output=output, console=err)
    out.print(f"[green]Best[/] trial {best['trial']}: {best['metric']} {best['value']:.4f} with {best['params']}")
    out.print(f"Run: {best['run']}   (summary: {output / 'best.json'})")
