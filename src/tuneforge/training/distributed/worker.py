"""What each Ray Train worker runs: the single-process recipe (:func:`tuneforge.training.recipe.train`), unchanged.

Ray Train has set up ``torch.distributed`` (gloo on CPU, nccl on GPU) and the ``RANK``/``WORLD_SIZE`` variables
before :func:`train_loop` starts, so transformers' ``Trainer`` inside the recipe shards the data across the workers
(a distributed sampler), wraps the model in DistributedDataParallel (gradients all-reduced each step) and gathers
the dev predictions from every shard. Each worker writes its run into a folder of its own; rank 0's finished
folder is reported to Ray Train as the last checkpoint, and the driver copies it to ``--output``.

The worker adds three callbacks to the recipe's: Ray's ``RayTrainReportCallback`` (every Trainer checkpoint goes
to Ray Train's storage), :class:`_Report` (every training log and evaluation through ``ray.train.report``, which
the driver turns into the run's events) and :class:`_Steps` (rank 0 counts its steps, so a run that lost a worker
can say how many steps it repeated). A worker restarted after a failure gets the last checkpoint from
``ray.train.get_checkpoint()`` and resumes the recipe from it.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from transformers import TrainerCallback

__all__ = ["FINAL_DIR", "train_loop"]

#: the name of the reported checkpoint that holds rank 0's finished run folder
FINAL_DIR = "tuneforge-run"


class _Steps(TrainerCallback):
    """Rank 0 tells the run's log each step it finished (fire and forget)."""

    def __init__(self, log: Any) -> None:
        self.log = log

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.log.step.remote(int(state.global_step))


def _collective_stop(log: Any, rank: int, world: int) -> Any:
    """``should_stop`` for the recipe: rank 0 asks the run's log, and all ranks agree through an all-reduce, so
    that every worker stops at the same step (a worker that stopped alone would leave the others waiting)."""
    import ray
    import torch
    import torch.distributed as dist

    def should_stop() -> bool:
        flag = bool(ray.get(log.stop_requested.remote())) if rank == 0 else False
        if world > 1 and dist.is_initialized():
            t = torch.tensor([1 if flag else 0])
            dist.all_reduce(t)
            flag = bool(t.item())
        return flag

    return should_stop


def _restore(checkpoint: Any, out: Path, config: Any) -> bool:
    """Lay out a Ray Train checkpoint as the interrupted run the recipe resumes: ``out`` with the run's
    configuration and ``checkpoints/checkpoint-N``. False when there is no checkpoint (a fresh start)."""
    from tuneforge import runs
    from tuneforge.training.manifest import now

    if checkpoint is None:
        return False
    with checkpoint.as_directory() as d:
        src = Path(d) / "checkpoint"
        if not (src / "trainer_state.json").is_file():
            return False
        step = int(json.loads((src / "trainer_state.json").read_text())["global_step"])
        shutil.copytree(src, runs.checkpoints_dir(out) / f"checkpoint-{step}")
    runs.write_run_config(out, {"config": config.to_json(), "started_at": now()})
    return True


def train_loop(loop: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the :class:`~ray.train.torch.TorchTrainer`: the recipe on this worker."""
    import ray.train
    from ray.train import Checkpoint
    from ray.train.huggingface.transformers import RayTrainReportCallback

    from tuneforge.errors import TuneforgeError
    from tuneforge.training.config import make_config
    from tuneforge.training.recipe import train

    _quiet_ray_train()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    log = loop["log"]
    root = Path(tempfile.mkdtemp(prefix=f"tuneforge-ray-rank{rank}-"))
    out = root / "run"
    config = make_config({**loop["config"], "output": str(out)}, "the Ray run's configuration")
    console = Console(stderr=True) if rank == 0 else Console(file=io.StringIO())
    checkpoint = ray.train.get_checkpoint()
    try:
        resumed = _restore(checkpoint, out, config)
        step0 = _checkpoint_step(out) if resumed else 0
        ray.train.report({"type": "attempt", "rank": rank, "resumed_from_step": step0, "time": time.time()})

        def report(event: dict[str, Any]) -> None:
            ray.train.report({**event, "rank": rank})

        callbacks: list[Any] = [RayTrainReportCallback(), *([_Steps(log)] if rank == 0 else []),
                                *loop.get("callbacks", ())]
        try:
            result = train(config, settings=loop.get("settings"), resume=resumed, console=console, on_event=report,
                           should_stop=_collective_stop(log, rank, world), callbacks=callbacks)
        except TuneforgeError as e:  # bad data or options: the same on a replacement worker, so not retried
            ray.get(log.fail.remote(type(e), e.message, dict(vars(e))))
            return
        final: dict[str, Any] = {"type": "finished", "rank": rank, "interrupted": result.interrupted,
                                 "metrics": result.metrics}
        if rank == 0 and not result.interrupted:
            ray.train.report(final, checkpoint=Checkpoint.from_directory(str(out)), checkpoint_dir_name=FINAL_DIR)
        else:
            ray.train.report(final)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _quiet_ray_train() -> None:
    """Ray Train logs every report and checkpoint at INFO in each worker; the recipe's console says enough."""
    names = ["ray.train"]
    try:  # the loggers of Ray Train V2's worker context (named by its file) and storage
        import ray.train.v2._internal.execution.context as context
        import ray.train.v2._internal.execution.storage as storage

        names += [context.__file__, storage.__name__]
    except ImportError:  # another Ray version: its logs stay as they are
        pass
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)


def _checkpoint_step(out: Path) -> int:
    from tuneforge import runs

    found = runs.complete_checkpoints(runs.checkpoints_dir(out))
    return found[-1][0] if found else 0
