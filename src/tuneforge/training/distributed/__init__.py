"""Training on a Ray cluster (docs/ray.md): data-parallel fine-tuning with Ray Train and hyperparameter search
with Ray Tune, both running the single-process recipe (:mod:`tuneforge.training.recipe`) in their workers.

* :func:`train` — the training entry that honours ``config.executor`` (``local``: the recipe; ``ray``:
  :func:`~tuneforge.training.distributed.driver.train_on_ray`, a ``TorchTrainer`` of ``config.workers``).
* :func:`search_on_ray` — Ray Tune with Optuna's sampler and ASHA, each trial a TuneForge training
  (:mod:`~tuneforge.training.distributed.tune`).

Ray is imported only when one of them runs (the ``ray`` extra: ``pip install 'tuneforge[ray]'``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["search_on_ray", "train", "train_on_ray"]


def train(config: Any, **kwargs: Any) -> Any:
    """:func:`tuneforge.training.train` where ``config.executor`` says (this process, or Ray Train)."""
    from tuneforge.training.distributed.driver import train as dispatch

    return dispatch(config, **kwargs)


def train_on_ray(config: Any, **kwargs: Any) -> Any:
    from tuneforge.training.distributed.driver import train_on_ray as run

    return run(config, **kwargs)


def search_on_ray(values: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    from tuneforge.training.distributed.tune import search_on_ray as run

    return run(values, **kwargs)
