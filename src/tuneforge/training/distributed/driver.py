"""The driver of a Ray Train run: ``tuneforge train --executor ray --workers N``.

:func:`train_on_ray` starts a :class:`~ray.train.torch.TorchTrainer` whose workers each run the recipe
(:func:`~tuneforge.training.distributed.worker.train_loop`), relays what they report through ``ray.train.report``
as the run's events (the same ``on_event`` dicts a local run gives), and when they are done lays rank 0's finished
run folder out in ``--output``: the same files as a local run, with a ``distributed`` section in its manifest
(workers, attempts, steps repeated after a failure).

While it trains, ``--output`` holds the run configuration and, by default, Ray Train's storage (``ray/``: its
checkpoints), so an interrupted run continues with ``--resume`` (Ray restores the run of the same name from its
storage); ``FailureConfig(max_failures)`` replaces a worker that died and resumes from the last checkpoint within
the same command.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from tuneforge import runs
from tuneforge.errors import ConfigError, RunError, TuneforgeError
from tuneforge.settings import Settings
from tuneforge.training.config import TrainConfig, make_config
from tuneforge.training.distributed.cluster import absolute_paths, connect, storage_location
from tuneforge.training.manifest import now
from tuneforge.training.recipe import TrainResult, saved_config
from tuneforge.utils.fs import storage_errors

__all__ = ["RunLog", "check_ray_config", "train", "train_on_ray"]

Events = Callable[[dict[str, Any]], None]


class RunLog:
    """A Ray actor (``num_cpus=0``) the run's parts talk through: the controller's relay adds the workers'
    reports, rank 0 counts its steps, the driver drains the events and asks for a stop; a worker that met a
    TuneForge error leaves it here (it is not retried: a replacement worker would meet it again)."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._steps = 0
        self._stop = False
        self._error: tuple[type, str, dict[str, Any]] | None = None

    def event(self, event: dict[str, Any]) -> None:
        self._events.append(event)

    def step(self, _step: int) -> None:
        self._steps += 1

    def request_stop(self) -> None:
        self._stop = True

    def stop_requested(self) -> bool:
        return self._stop

    def fail(self, cls: type, message: str, attrs: dict[str, Any]) -> None:
        self._error = (cls, message, attrs)

    def drain(self) -> list[dict[str, Any]]:
        out, self._events = self._events, []
        return out

    def summary(self) -> dict[str, Any]:
        return {"steps_run": self._steps, "error": self._error}


def _relay(log: Any) -> Any:
    """A Ray Train ``UserCallback`` (it runs in the controller) that passes every report on to ``log``: rank 0's
    metrics, and the path of the checkpoint it came with."""
    from ray.train import UserCallback

    class Relay(UserCallback):  # type: ignore[misc]  # ray is untyped
        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            event = dict(metrics[0]) if metrics else {}
            if checkpoint is not None:
                event["checkpoint"] = checkpoint.path
            log.event.remote(event)

    return Relay()


def train(config: TrainConfig, **kwargs: Any) -> TrainResult:
    """Train where ``config.executor`` says: this process (the recipe) or Ray (:func:`train_on_ray`)."""
    if config.executor == "ray":
        return train_on_ray(config, **kwargs)
    from tuneforge import training  # looked up when called: the package's train (the recipe's)

    return training.train(config, **kwargs)


def _check_output(out: Path, config: TrainConfig, *, resume: bool, overwrite: bool) -> TrainConfig:
    """Check ``out`` as a local run does; returns the configuration to train (an interrupted run's own)."""
    if runs.has_manifest(out) and not overwrite:
        raise RunError(f"{out} already holds a trained model.",
                       hint="Choose another --output, or pass --overwrite to replace it.")
    if resume:
        return saved_config(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RunError(f"{out} already exists and holds files.",
                       hint="Pass --resume to continue an interrupted run, --overwrite to start over, or "
                            "choose another --output.")
    return config


def _start_output(out: Path, config: TrainConfig, *, resume: bool) -> None:
    """A new run's folder (emptied with ``overwrite``) holding its configuration (what ``--resume`` reads)."""
    if resume:
        return
    with storage_errors(out):
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        runs.write_run_config(out, {"config": config.to_json(), "started_at": now()})


def _default_storage(settings: Settings) -> str | None:
    """Ray Train's storage when ``ray_storage`` is not given: under the artifact storage when that is ``s3://``
    (every node reaches it), else None (``OUTPUT/ray``)."""
    url = settings.storage_url
    return f"{url.rstrip('/')}/ray-train" if url and url.startswith("s3://") else None


def train_on_ray(config: TrainConfig, *, settings: Settings | None = None, resume: bool = False,
                 overwrite: bool = False, console: Console | None = None, on_event: Events | None = None,
                 should_stop: Callable[[], bool] | None = None, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Data-parallel fine-tuning on Ray Train: ``config.workers`` workers, each the recipe on a shard of the data;
    returns what :func:`tuneforge.training.train` returns, for the folder in ``config.output``. ``callbacks``
    (picklable Trainer callbacks) join the recipe's in every worker."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from tuneforge.training.distributed.worker import FINAL_DIR, train_loop

    settings = settings or Settings()
    console = console or Console(stderr=True)
    t_start = time.time()
    out = Path(config.output).resolve()
    config = make_config(absolute_paths({**config.to_json(), "output": str(out)}), "the run's options")
    check_ray_config(config)
    config = _check_output(out, config, resume=resume, overwrite=overwrite)
    worker_config, global_batch = _per_worker(config, settings)
    _start_output(out, config, resume=resume)
    where = config.ray_storage or _default_storage(settings)
    storage_path, filesystem = storage_location(where, out / "ray")
    name = f"tuneforge-{out.name}-{hashlib.sha256(str(out).encode()).hexdigest()[:8]}"
    ray = connect()
    log = ray.remote(num_cpus=0)(RunLog).remote()
    resources = {"CPU": 1, **({"GPU": 1} if config.use_gpu else {})}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"config": worker_config.to_json(), "settings": settings, "log": log,
                           "callbacks": list(callbacks)},
        torch_config=TorchConfig(backend="nccl" if config.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=config.workers, use_gpu=config.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=storage_path, storage_filesystem=filesystem,
                             failure_config=FailureConfig(max_failures=config.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2), callbacks=[_relay(log)]))
    console.print(f"Ray Train: {config.workers} worker(s) ({'GPU, nccl' if config.use_gpu else 'CPU, gloo'}), "
                  f"storage {storage_path}/{name}, up to {config.max_failures} failure(s) survived.")
    tracker = _Tracker(console, on_event)
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as e:  # noqa: BLE001 - re-raised in the driver's thread below
            outcome["error"] = e

    thread = threading.Thread(target=fit, name="tuneforge-ray-fit", daemon=True)
    thread.start()
    stop_sent = False
    while thread.is_alive():
        thread.join(0.5)
        tracker.take(ray.get(log.drain.remote()))
        if should_stop is not None and not stop_sent and should_stop():
            log.request_stop.remote()
            stop_sent = True
    tracker.take(ray.get(log.drain.remote()))
    summary = ray.get(log.summary.remote())
    ray.kill(log)
    if summary["error"] is not None:
        raise _rebuilt(*summary["error"])
    if "error" in outcome:
        raise RunError(f"Ray training failed: {outcome['error']}",
                       hint=f"The run's checkpoints are in {storage_path}/{name}; continue with --resume.") \
            from outcome["error"]
    result = outcome["result"]
    if tracker.interrupted or result.checkpoint is None or not result.checkpoint.path.rstrip("/").endswith(FINAL_DIR):
        console.print(f"Stopped at step {tracker.last_step}; resume with --resume.")
        return TrainResult(out, {}, None, interrupted=True)
    info = {"executor": "ray", "ray_version": ray.__version__, "workers": config.workers, "use_gpu": config.use_gpu,
            "backend": "nccl" if config.use_gpu else "gloo", "attempts": max(1, tracker.attempts),
            "restarts": max(0, tracker.attempts - 1), "storage": f"{storage_path}/{name}",
            "batch_size_per_worker": worker_config.batch_size, "global_batch_size": global_batch}
    manifest = _lay_out(result.checkpoint, out, info, steps_run=summary["steps_run"], t_start=t_start,
                        config=config)
    if not config.keep_checkpoints:
        _remove_storage(storage_path, filesystem, name)
    return TrainResult(out, manifest, tracker.metrics, stopped_early=bool(manifest["training"].get("stopped_early")))


class _Tracker:
    """Turns the relayed reports into the run's events and console lines, and counts the attempts."""

    def __init__(self, console: Console, on_event: Events | None) -> None:
        self.console, self.on_event = console, on_event
        self.attempts, self.last_step, self.interrupted = 0, 0, False
        self.metrics: dict[str, Any] | None = None

    def take(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            kind = ev.get("type")
            if kind == "attempt":
                self.attempts += 1
                if self.attempts > 1:
                    self.console.print(f"[yellow]Ray Train: a worker failed[/]; attempt {self.attempts} resumes "
                                       f"from step {ev.get('resumed_from_step', 0)}.")
                self._emit({"type": "attempt", "attempt": self.attempts,
                            "resumed_from_step": ev.get("resumed_from_step", 0)})
            elif kind == "finished":
                self.interrupted = bool(ev.get("interrupted"))
                self.metrics = ev.get("metrics")
            elif kind == "metrics":
                self.last_step = int(ev.get("step") or self.last_step)
                self._emit({k: v for k, v in ev.items() if k not in ("rank", "checkpoint")})
            elif ev.get("checkpoint"):  # RayTrainReportCallback: a Trainer checkpoint, now in Ray's storage
                self._emit({"type": "checkpoint", "step": ev.get("step"), "path": ev["checkpoint"]})

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)


def _rebuilt(cls: type, message: str, attrs: dict[str, Any]) -> BaseException:
    """The TuneForge error a worker met, as it was raised there (its message, hint and problems)."""
    if not (isinstance(cls, type) and issubclass(cls, TuneforgeError)):
        return RunError(message)
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(attrs)
    return err


def _per_worker(config: TrainConfig, settings: Settings) -> tuple[TrainConfig, int]:
    """The workers' configuration, whose ``batch_size`` is per worker, and the run's examples per step:
    ``batch_size`` (or, when auto, what the recipe picks for this data and model) split across the workers, so
    that a Ray run takes the optimizer steps of a local run with the same options."""
    wanted = config.batch_size
    if wanted is None:
        from tuneforge.training.setup import prepare

        wanted = int(prepare(config, settings, Console(quiet=True)).hp["batch_size"])  # also checks the data here
    per = max(1, wanted // config.workers)
    return config.model_copy(update={"batch_size": per}), per * config.workers


def _lay_out(checkpoint: Any, out: Path, info: dict[str, Any], *, steps_run: int, t_start: float,
             config: TrainConfig) -> dict[str, Any]:
    """Rank 0's finished run folder (the last checkpoint) into ``out``: its files first, the manifest last (with
    the ``distributed`` section, the run's own options and ``out`` as its output), then the run configuration
    goes."""
    staging = out / ".ray-final.partial"
    with storage_errors(out):
        shutil.rmtree(staging, ignore_errors=True)
        checkpoint.to_directory(str(staging))
        manifest = json.loads((staging / runs.MANIFEST).read_text(encoding="utf-8"))
        (staging / runs.MANIFEST).unlink()
        for f in staging.iterdir():
            target = out / f.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(f, target)
        staging.rmdir()
        steps = int(manifest.get("training", {}).get("steps") or 0)
        info.update(steps_run=max(steps_run, steps), steps_repeated=max(0, steps_run - steps))
        manifest["distributed"] = info
        if isinstance(manifest.get("config"), dict):
            manifest["config"].update(output=str(out), batch_size=config.batch_size)
        if isinstance(manifest.get("resolved"), dict):
            manifest["resolved"]["batch_size"] = info["global_batch_size"]
        manifest.setdefault("training", {})["wall_seconds"] = round(time.time() - t_start, 2)
        runs.write_manifest(out, manifest)
        runs.remove_run_config(out)
    return manifest


def _remove_storage(storage_path: str, filesystem: Any, name: str) -> None:
    """Ray Train's copy of the run (its checkpoints) once the run folder is in place."""
    if filesystem is None:
        shutil.rmtree(Path(storage_path) / name, ignore_errors=True)
        with_parent = Path(storage_path)
        if with_parent.is_dir() and not any(with_parent.iterdir()):
            with_parent.rmdir()
        return
    with contextlib.suppress(OSError):  # a bucket policy may forbid deletes; the copy is harmless
        filesystem.delete_dir(f"{storage_path}/{name}")


def check_ray_config(config: TrainConfig) -> None:
    """Refuse a Ray run this machine's Ray cannot place (more workers than CPUs on a local Ray)."""
    if config.executor == "ray" and config.workers > 1 and not os.environ.get("RAY_ADDRESS"):
        cpus = os.cpu_count() or 1
        if config.workers > cpus:
            raise ConfigError(f"workers: {config.workers} workers need {config.workers} CPUs; this machine has "
                              f"{cpus}", hint="Set RAY_ADDRESS to a Ray cluster, or give fewer --workers.")
