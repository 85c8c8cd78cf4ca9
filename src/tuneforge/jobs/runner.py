"""What a worker runs for a job: validate its files, then train it (resuming from the last checkpoint).

These functions run in an executor (a child process or a thread) and know nothing of the database: they get a
picklable spec, report through ``emit`` (plain dicts) and return a plain dict. The worker turns those into
database rows, guarded by the attempt's lease.

Each attempt trains in its own folder, ``<work>/<job>/attempt-<n>``; a new attempt starts from a copy of the
latest complete checkpoint of the earlier ones (hard links where possible), so a worker that was presumed dead
but still runs can never write into the folder of the attempt that replaced it.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from tuneforge import runs
from tuneforge.errors import (
    ConfigError,
    DataError,
    DataProblem,
    ModelFormatError,
    ModelNotFoundError,
    StorageError,
    TuneforgeError,
)

__all__ = ["KEPT_CHECKPOINTS", "FileRef", "RunSpec", "ValidateSpec", "checkpoint_runs", "complete_checkpoints",
           "run_training", "scrub_paths", "train_values", "validate_files"]

Emit = Callable[[dict[str, Any]], None]
#: checkpoints of a succeeded job kept as models (``ft:...:ckpt-step-N``), the latest ones, as OpenAI does
KEPT_CHECKPOINTS = 3
#: an absolute POSIX path in a message (not part of a URL or a relative path)
_ABS_PATH = re.compile(r"(?<![\w:/.~-])(?:/[^\s'\"/:,;()\[\]<>]+)+/?")


@dataclass(frozen=True)
class FileRef:
    """An uploaded file as the runner sees it: where it is, and the names the customer knows it by."""

    path: str
    file_id: str
    filename: str
    param: str  # "training_file" or "validation_file"


@dataclass(frozen=True)
class ValidateSpec:
    job_id: str
    task: str
    base_model: str  # a registry name or a local folder
    training: FileRef
    validation: FileRef | None
    options: dict[str, Any]
    epochs: float
    cache_dir: str


@dataclass(frozen=True)
class RunSpec:
    job_id: str
    attempt: int  # the queue's fencing token: names the attempt's folder
    work_root: str  # <work>/<job>: holds attempt-<n> folders
    values: dict[str, Any]  # TrainConfig fields except output
    files: tuple[FileRef, ...]
    cache_dir: str
    torch_threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    training_attempt: int = 1  # the number users see: 1 for the first training of the job


# ---------------------------------------------------------------------------------------------------- errors
def scrub_paths(message: str, files: tuple[FileRef, ...] | list[FileRef] = ()) -> str:
    """``message`` without server paths: the job's files by the names the customer knows them by, any other
    absolute path by its last component only (a tenant must not learn the server's layout from an error)."""
    for f in sorted(files, key=lambda f: len(f.path), reverse=True):
        message = message.replace(f.path, f"{f.filename} ({f.file_id})")
    return _ABS_PATH.sub(lambda m: PurePath(m.group()).name or "the folder", message)


def _error(e: BaseException, files: tuple[FileRef, ...] | list[FileRef] = ()) -> dict[str, Any]:
    """An OpenAI-style error for a failed job (no server path in its message), and whether another attempt could
    succeed."""
    err = _classify(e, files)
    err["message"] = scrub_paths(err["message"], files)
    return err


def _classify(e: BaseException, files: tuple[FileRef, ...] | list[FileRef]) -> dict[str, Any]:
    if isinstance(e, DataError):
        by_path = {f.path: f for f in files}
        first = e.problems[0] if e.problems else None
        ref = by_path.get(first.file) if first else None
        lines = [_describe(p, by_path) for p in e.problems[:10]]
        more = f" (and {len(e.problems) - 10} more problems)" if len(e.problems) > 10 else ""
        which = ref.param if ref else "training_file"
        return {"code": f"invalid_{which}", "param": which, "retryable": False,
                "message": "; ".join(lines) + more}
    if isinstance(e, ConfigError):
        return {"code": "invalid_hyperparameters", "param": None, "retryable": False,
                "message": "; ".join(e.problems)}
    if isinstance(e, ModelNotFoundError | ModelFormatError):
        return {"code": "invalid_model", "param": "model", "retryable": False, "message": str(e)}
    if isinstance(e, StorageError):
        return {"code": "storage_error", "param": None, "retryable": True, "message": str(e)}
    if isinstance(e, TuneforgeError):
        return {"code": "training_error", "param": None, "retryable": False, "message": str(e)}
    return {"code": "training_error", "param": None, "retryable": True, "message": f"{type(e).__name__}: {e}"}


def _describe(p: DataProblem, by_path: dict[str, FileRef]) -> str:
    ref = by_path.get(p.file)
    where = f"{ref.filename} ({ref.file_id})" if ref else Path(p.file).name
    line = f", line {p.line}" if p.line is not None else ""
    fld = f", field '{p.field}'" if p.field else ""
    hint = f" ({p.hint})" if p.hint else ""
    return f"{where}{line}{fld}: {p.message}{hint}"


# ------------------------------------------------------------------------------------------------ validation
def _columns(options: dict[str, Any]) -> Any:
    from tuneforge.data import ColumnMap

    return ColumnMap(**{k: v for k, v in (options.get("columns") or {}).items() if v is not None})


def _load(task: str, training: FileRef, validation: FileRef | None, options: dict[str, Any]) -> tuple[Any, Any]:
    """The checks ``tuneforge train`` makes before it loads a model, with every problem of both files at once."""
    from tuneforge.training import load_training_data

    return load_training_data(task, training.path, validation.path if validation else None,
                              columns=_columns(options), multi_label=options.get("multi_label"),
                              label_separator=options.get("label_separator"),
                              lenient_bio=bool(options.get("lenient_bio")))


def validate_files(spec: ValidateSpec, emit: Emit, should_stop: Callable[[], bool]) -> dict[str, Any]:
    """Validate the job's files for its task and estimate the tokens it will train."""
    from transformers import AutoTokenizer

    from tuneforge.models.registry import resolve_base_model
    from tuneforge.tasks import get_task

    files = [spec.training] + ([spec.validation] if spec.validation else [])
    try:
        train_ds, eval_ds = _load(spec.task, spec.training, spec.validation, spec.options)
        base = resolve_base_model(spec.base_model, Path(spec.cache_dir))
        tokenizer = AutoTokenizer.from_pretrained(str(base.path))
        tokens = get_task(spec.task).count_tokens(train_ds.examples, tokenizer, spec.options.get("max_length"))
    except Exception as e:  # noqa: BLE001 - reported on the job
        return {"status": "failed", "error": _error(e, files)}
    summary = f"{len(train_ds)} training examples" + (f", {len(eval_ds)} validation examples" if eval_ds else "")
    emit({"message": f"Validated {summary}.", "data": {"train_examples": len(train_ds),
                                                      "validation_examples": len(eval_ds) if eval_ds else 0}})
    return {"status": "valid", "estimated_tokens": int(tokens * spec.epochs)}


# -------------------------------------------------------------------------------------------------- training
def train_values(*, task: str, base_model: str, data: str, eval_data: str | None, seed: int,
                 hyperparameters: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """TrainConfig fields of a job (without ``output``): OpenAI hyperparameters mapped onto TuneForge's."""
    values: dict[str, Any] = {**options, "task": task, "base_model": base_model, "data": data,
                              "eval_data": eval_data, "seed": seed}
    n_epochs = hyperparameters.get("n_epochs", "auto")
    if n_epochs not in (None, "auto"):
        values["epochs"] = n_epochs
    batch = hyperparameters.get("batch_size", "auto")
    if batch not in (None, "auto"):
        values["batch_size"] = batch
    return values


def _lr_from_multiplier(values: dict[str, Any], multiplier: float, cache_dir: Path) -> float:
    """``learning_rate_multiplier`` times the learning rate ``train`` would pick for this model and data."""
    from tuneforge.models.registry import resolve_base_model
    from tuneforge.tasks import get_task
    from tuneforge.training import auto_hyperparameters, make_config

    cfg = make_config({**values, "output": "unused", "learning_rate": None})
    base = resolve_base_model(cfg.base_model, cache_dir)
    n_train = len(_load(cfg.task, FileRef(str(cfg.data), "", Path(cfg.data).name, "training_file"), None,
                        values)[0])
    auto = auto_hyperparameters(cfg, n_train=n_train, model_config=json.loads((base.path / "config.json").read_text()),
                                model_max=10**6, task=get_task(cfg.task))
    return float(auto["learning_rate"]) * multiplier


def complete_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run folder (the run-folder contract's rule), oldest first."""
    return runs.complete_checkpoints(runs.checkpoints_dir(run_dir))


def checkpoint_runs(out: Path, dest_root: Path, keep: int = KEPT_CHECKPOINTS) -> list[tuple[int, Path]]:
    """Servable run folders (``dest_root/ckpt-step-N``) of the latest ``keep`` complete checkpoints of the finished
    run ``out``, oldest first. A checkpoint that cannot be served (its method saves weights its own way, or it is
    damaged) is skipped: the job's model does not depend on it."""
    made = []
    for step, ckpt in complete_checkpoints(out)[-keep:] if keep > 0 else []:
        dest = dest_root / f"ckpt-step-{step}"
        try:
            if runs.write_checkpoint_run(out, ckpt, dest):
                made.append((step, dest))
        except (OSError, TuneforgeError):
            shutil.rmtree(dest, ignore_errors=True)
    return made


def checkpoint_metrics(ckpt: Path, step: int) -> dict[str, Any]:
    """The latest logged training loss and dev metrics up to ``step``, from the checkpoint's trainer state."""
    try:
        history = json.loads((ckpt / "trainer_state.json").read_text())["log_history"]
    except (OSError, ValueError, KeyError):
        return {}
    metrics: dict[str, Any] = {"step": step}
    for entry in history:
        if entry.get("step", 0) > step:
            break
        if "loss" in entry:
            metrics["train_loss"] = entry["loss"]
        metrics.update({k: v for k, v in entry.items() if k.startswith("eval_") and isinstance(v, int | float)
                        and not k.endswith(("runtime", "per_second"))})
    return metrics


def _link_copy(src: Path, dst: Path) -> None:
    def copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=copy)


def _prepare_attempt(spec: RunSpec, emit: Emit) -> tuple[Path, bool, Path | None]:
    """The attempt's folder, whether to resume, and a finished run of an earlier attempt if there is one."""
    root = Path(spec.work_root)
    out = root / f"attempt-{spec.attempt}"
    earlier = sorted((d for d in root.glob("attempt-*") if d != out and d.name[8:].isdigit()),
                     key=lambda d: int(d.name[8:]), reverse=True)
    for d in earlier:
        if runs.has_manifest(d):
            return out, False, d
    if out.exists():
        shutil.rmtree(out)
    candidates = [(step, ck, d) for d in earlier if runs.has_run_config(d) for step, ck in complete_checkpoints(d)]
    for step, ck, d in sorted(candidates, key=lambda c: c[0], reverse=True):
        try:
            runs.checkpoints_dir(out).mkdir(parents=True)
            saved = runs.read_run_config(d)
            saved["config"]["output"] = str(out)
            runs.write_run_config(out, saved)
            _link_copy(ck, runs.checkpoints_dir(out) / ck.name)
        except (OSError, ValueError, KeyError, TypeError, TuneforgeError):
            # an earlier attempt still rotating its checkpoints: try the next one
            shutil.rmtree(out, ignore_errors=True)
            continue
        emit({"message": f"Resuming from the checkpoint at step {step} (saved by {d.name}).",
              "data": {"resumed_from_step": step, "from": d.name}})
        return out, True, None
    return out, False, None


def _metrics_event(event: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in event.items() if k != "type"}
    if "loss" in data:
        data["train_loss"] = data["loss"]
    shown = [f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in data.items()
             if k == "train_loss" or k.startswith("eval_") and not k.endswith(("runtime", "per_second"))]
    total = f"/{data['total_steps']}" if data.get("total_steps") else ""
    return {"type": "metrics", "message": f"Step {data.get('step')}{total}: " + (", ".join(shown) or "logged"),
            "data": data}


def run_training(spec: RunSpec, emit: Emit, should_stop: Callable[[], bool]) -> dict[str, Any]:
    """Train one attempt of a job. Returns ``{"status": "succeeded" | "stopped" | "failed", ...}``."""
    from rich.console import Console

    from tuneforge.settings import Settings
    from tuneforge.training import make_config, train

    if spec.torch_threads:
        import torch

        torch.set_num_threads(spec.torch_threads)
    try:
        out, resume, finished = _prepare_attempt(spec, emit)
        if finished is not None:
            manifest = runs.read_manifest(finished)
            emit({"message": f"An earlier attempt ({finished.name}) had finished training; using its model."})
            return _succeeded(spec, finished, manifest)
        values = dict(spec.values)
        # keep the checkpoints until the worker has recorded them all; it removes them before publishing
        values.setdefault("keep_checkpoints", True)
        mult = values.pop("learning_rate_multiplier", None)
        if mult not in (None, "auto") and values.get("learning_rate") is None:
            values["learning_rate"] = _lr_from_multiplier(values, float(mult), Path(spec.cache_dir))
        config = make_config({**values, "output": str(out)}, source="the job")
        quiet = Console(file=io.StringIO(), width=120)
        settings = Settings(cache_dir=Path(spec.cache_dir))
        result = train(config, settings=settings, resume=resume, overwrite=not resume, console=quiet,
                       on_event=lambda e: emit(_metrics_event(e)), should_stop=should_stop)
    except BaseException as e:  # noqa: BLE001 - every failure becomes the job's error
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        err = _error(e, spec.files)
        return {"status": "failed", "error": {k: err[k] for k in ("code", "message", "param")},
                "retryable": err["retryable"]}
    if result.interrupted:
        return {"status": "stopped"}
    return _succeeded(spec, out, result.manifest)


def _succeeded(spec: RunSpec, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from tuneforge.tasks import get_task, load_dataset

    tokens = 0
    try:  # metering must not fail a finished training
        data = manifest["config"]["data"]
        ds = load_dataset(data, manifest["task"], columns=_columns(manifest["config"]), require_labels=True,
                          multi_label=manifest.get("multi_label"),
                          label_separator=manifest["config"].get("label_separator"))
        tok = AutoTokenizer.from_pretrained(str(out))
        per_epoch = get_task(manifest["task"]).count_tokens(ds.examples, tok, manifest.get("max_length"))
        tokens = int(round(per_epoch * float(manifest.get("training", {}).get("epochs") or 1)))
    except (OSError, KeyError, ValueError, TuneforgeError):
        pass
    training = manifest.get("training", {})
    return {"status": "succeeded", "output": str(out), "trained_tokens": tokens,
            "summary": {"steps": training.get("steps"), "epochs": training.get("epochs"),
                        "final_loss": training.get("final_loss"), "metrics": manifest.get("metrics", {}),
                        "trained_tokens": tokens}}


