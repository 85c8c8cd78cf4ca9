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

__all__ = ["KEPT_CHECKPOINTS", "TUNING_METHODS", "FileRef", "RunSpec", "ValidateSpec", "check_method_fits",
           "checkpoint_metrics", "checkpoint_runs", "complete_checkpoints", "final_metrics", "is_reported_metric",
           "job_epochs", "public_metrics", "resolved_hyperparameters", "run_training", "scrub_paths",
           "tokenizer_dir", "train_values", "validate_files"]

Emit = Callable[[dict[str, Any]], None]
#: checkpoints of a succeeded job kept as models (``ft:...:ckpt-step-N``), the latest ones, as OpenAI does
KEPT_CHECKPOINTS = 3
#: an absolute POSIX path in a message (not part of a URL or a relative path)
_ABS_PATH = re.compile(r"(?<![\w:/.~-])(?:/[^\s'\"/:,;()\[\]<>]+)+/?")
#: OpenAI's method types and the tuning method (TrainConfig's ``method``) each trains with; None is the task's
#: default method (LoRA for generation, full fine-tuning for the encoder tasks)
TUNING_METHODS: dict[str, str | None] = {"supervised": None, "dpo": "dpo"}
#: the Trainer's timing figures: logged, but not metrics of the model
_TIMING = ("runtime", "per_second")


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
    epochs: float | str  # a number, or "auto" (OpenAI's rule, resolved on the number of training examples)
    cache_dir: str
    method: str = "supervised"  # OpenAI's method type (TUNING_METHODS)


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


def check_method_fits(task: str, method: str, files: list[tuple[Any, FileRef]]) -> None:
    """Refuse files of a kind the job's method does not train on (a task with several kinds of data, such as
    generation: conversations for ``supervised``, preference pairs for ``dpo``), naming the method that fits.
    ``files``: (the file's Dataset, its FileRef). Raises :class:`DataError` (``invalid_training_file``)."""
    from tuneforge.methods import get_method
    from tuneforge.tasks import get_task

    check = getattr(get_task(task), "check_method_data", None)
    if check is None:
        return
    tuning = TUNING_METHODS[method]
    preference = bool(tuning and get_method(tuning).preference)
    problems = []
    for ds, ref in files:
        try:
            check(ds, method=tuning or "lora", preference=preference)
        except ConfigError:
            problems.append(DataProblem(ref.path, None, None, _method_mismatch(method, preference)))
    if problems:
        raise DataError(problems, hint="Give a file of the kind the method trains on, or change method.type.")


def _method_mismatch(method: str, preference: bool) -> str:
    if preference:
        return (f"holds chat conversations, which train with method type 'supervised'; method type '{method}' needs "
                "preference pairs, one per line: {\"input\": {\"messages\": [...]}, \"preferred_output\": [...], "
                "\"non_preferred_output\": [...]}")
    return (f"holds preference pairs (preferred and non-preferred answers), which train with method type 'dpo'; "
            f"method type '{method}' needs conversations ({{\"messages\": [...]}}, prompt/completion, Alpaca or "
            "ShareGPT rows)")


def tokenizer_dir(base_model: str, cache_dir: Path) -> Path:
    """The folder holding the tokenizer of a job's base model: a fine-tuned model's run folder holds its own (an
    adapter run need not be merged into its base for it), else the base model's folder."""
    from tuneforge.models.registry import resolve_base_model

    folder = Path(base_model)
    if folder.is_dir() and runs.has_manifest(folder):
        return folder
    return resolve_base_model(base_model, cache_dir).path


def job_epochs(values: dict[str, Any], n_train: int) -> float:
    """The epochs a job's TrainConfig values train for ``n_train`` training examples (``auto``: OpenAI's rule)."""
    from tuneforge.tasks.generation.budget import auto_epochs
    from tuneforge.training.config import CoreConfig

    epochs = values.get("epochs", CoreConfig.model_fields["epochs"].default)
    return float(auto_epochs(max(1, n_train))) if epochs == "auto" else float(epochs)


def validate_files(spec: ValidateSpec, emit: Emit, should_stop: Callable[[], bool]) -> dict[str, Any]:
    """Validate the job's files for its task (and its method) and estimate the tokens it will train."""
    from transformers import AutoTokenizer

    from tuneforge.tasks import get_task

    files = [spec.training] + ([spec.validation] if spec.validation else [])
    try:
        train_ds, eval_ds = _load(spec.task, spec.training, spec.validation, spec.options)
        check_method_fits(spec.task, spec.method, [(train_ds, spec.training)]
                          + ([(eval_ds, spec.validation)] if eval_ds is not None and spec.validation else []))
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir(spec.base_model, Path(spec.cache_dir))))
        tokens = get_task(spec.task).count_tokens(train_ds.examples, tokenizer, spec.options.get("max_length"))
        epochs = job_epochs({"epochs": spec.epochs}, len(train_ds))
    except Exception as e:  # noqa: BLE001 - reported on the job
        return {"status": "failed", "error": _error(e, files)}
    summary = f"{len(train_ds)} training examples" + (f", {len(eval_ds)} validation examples" if eval_ds else "")
    emit({"message": f"Validated {summary}.", "data": {"train_examples": len(train_ds),
                                                      "validation_examples": len(eval_ds) if eval_ds else 0}})
    return {"status": "valid", "estimated_tokens": int(tokens * epochs)}


# -------------------------------------------------------------------------------------------------- training
def train_values(*, task: str, base_model: str, data: str, eval_data: str | None, seed: int,
                 hyperparameters: dict[str, Any], options: dict[str, Any],
                 method: str = "supervised") -> dict[str, Any]:
    """TrainConfig fields of a job (without ``output``): OpenAI's method and hyperparameters mapped onto TuneForge's.

    ``method`` ``supervised`` trains with the task's default method (LoRA for generation, full fine-tuning for the
    encoder tasks), ``dpo`` with DPO (``beta`` is ``dpo_beta``). ``n_epochs`` ``auto`` is OpenAI's rule (3, more
    for small files, fewer for large ones) for generation, and 3 for the encoder tasks; ``learning_rate_multiplier``
    is applied when the run starts (:func:`_lr_from_multiplier`)."""
    from tuneforge.tasks import get_task

    values: dict[str, Any] = {**options, "task": task, "base_model": base_model, "data": data,
                              "eval_data": eval_data, "seed": seed}
    tuning = TUNING_METHODS[method]
    if tuning is not None:
        values["method"] = tuning
    n_epochs = hyperparameters.get("n_epochs", "auto")
    if n_epochs not in (None, "auto"):
        values["epochs"] = n_epochs
    elif get_task(task).generative:
        values.setdefault("epochs", "auto")
    batch = hyperparameters.get("batch_size", "auto")
    if batch not in (None, "auto"):
        values["batch_size"] = batch
    beta = hyperparameters.get("beta", "auto")
    if beta not in (None, "auto"):
        values["dpo_beta"] = beta
    return values


def _lr_from_multiplier(values: dict[str, Any], multiplier: float, cache_dir: Path) -> float:
    """``learning_rate_multiplier`` times the learning rate ``train`` would pick for this model, method and data."""
    from tuneforge.methods import get_method
    from tuneforge.tasks import get_task
    from tuneforge.training import auto_hyperparameters, make_config

    cfg = make_config({**values, "output": "unused", "learning_rate": None})
    base = runs.resolve_base_model(cfg.base_model, cache_dir)  # a fine-tuned model (an adapter run) too
    n_train = len(_load(cfg.task, FileRef(str(cfg.data), "", Path(cfg.data).name, "training_file"), None,
                        values)[0])
    auto = auto_hyperparameters(cfg, n_train=n_train, model_config=json.loads((base.path / "config.json").read_text()),
                                model_max=10**6, task=get_task(cfg.task))
    # the rate the run would train at: the task's, times the method's scale (LoRA's x5), which an explicit
    # learning_rate does not get
    return float(auto["learning_rate"]) * get_method(cfg.method).lr_scale * multiplier


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


def is_reported_metric(name: str) -> bool:
    """Whether a logged figure is a metric of the model (a job's checkpoints and results file list these): losses,
    token accuracies, dev metrics, preference rewards; not the step, learning rate, gradient norm or timings."""
    return (name.startswith(("train_", "valid_", "full_valid_", "eval_", "rewards/", "logps/"))
            and not name.endswith(_TIMING))


def public_metrics(logs: dict[str, Any], *, generative: bool) -> dict[str, Any]:
    """A Trainer log under the names a job reports.

    Every task: the training loss is ``train_loss``, and the end-of-training summary's average loss is
    ``mean_train_loss`` (not mistaken for the last step's). Generation, with OpenAI's names: ``train_loss``,
    ``train_mean_token_accuracy``, and the evaluations on the validation file as ``valid_loss``,
    ``valid_mean_token_accuracy``, ``valid_perplexity`` (DPO: ``valid_rewards/accuracies`` ... beside the
    training logs' TRL names ``rewards/accuracies``, ``rewards/margins`` ...); the Trainer's own ``eval_loss``, the
    same figure as ``valid_loss``, is left out. The encoder tasks keep ``loss`` and their dev metrics ``eval_*``."""
    out: dict[str, Any] = {}
    summary = "train_runtime" in logs
    for k, v in logs.items():
        if k == "train_loss" and summary:
            out["mean_train_loss"] = v
        elif k == "loss":
            out["train_loss"] = v
            if not generative:
                out[k] = v
        elif generative and k == "mean_token_accuracy":
            out["train_mean_token_accuracy"] = v
        elif generative and k.startswith("eval_") and not k.endswith(_TIMING):
            rest = k.removeprefix("eval_")
            if rest != "loss":
                out[rest if rest.startswith("valid_") else f"valid_{rest}"] = v
        else:
            out[k] = v
    return out


def final_metrics(manifest: dict[str, Any], *, generative: bool) -> dict[str, Any]:
    """A finished generation run's evaluation on the whole validation file, with OpenAI's names for the end of a
    job (``full_valid_loss``, ``full_valid_mean_token_accuracy``, ... ``full_valid_preference_accuracy`` for DPO);
    empty for the encoder tasks (their dev metrics are in the summary) and without a validation file."""
    dev = (manifest.get("metrics") or {}).get("dev") or {}
    if not generative:
        return {}
    return {f"full_valid_{k.removeprefix('valid_')}": v for k, v in dev.items()
            if k != "n" and isinstance(v, int | float) and not isinstance(v, bool)}


def checkpoint_metrics(ckpt: Path, step: int, *, generative: bool = False) -> dict[str, Any]:
    """The latest logged training loss and dev metrics up to ``step``, from the checkpoint's trainer state, under
    the names a job reports (:func:`public_metrics`)."""
    try:
        history = json.loads((ckpt / "trainer_state.json").read_text())["log_history"]
    except (OSError, ValueError, KeyError):
        return {}
    metrics: dict[str, Any] = {"step": step}
    for entry in history:
        if entry.get("step", 0) > step:
            break
        metrics.update({k: v for k, v in public_metrics(entry, generative=generative).items()
                        if is_reported_metric(k) and isinstance(v, int | float)})
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


def _metrics_event(event: dict[str, Any], generative: bool = False) -> dict[str, Any]:
    data = public_metrics({k: v for k, v in event.items() if k != "type"}, generative=generative)
    shown = [f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in data.items()
             if is_reported_metric(k) or k == "mean_train_loss"]
    total = f"/{data['total_steps']}" if data.get("total_steps") else ""
    return {"type": "metrics", "message": f"Step {data.get('step')}{total}: " + (", ".join(shown) or "logged"),
            "data": data}


def run_training(spec: RunSpec, emit: Emit, should_stop: Callable[[], bool]) -> dict[str, Any]:
    """Train one attempt of a job. Returns ``{"status": "succeeded" | "stopped" | "failed", ...}``."""
    from rich.console import Console

    from tuneforge.settings import Settings
    from tuneforge.tasks import get_task
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
        generative = bool(get_task(config.task).generative)
        result = train(config, settings=settings, resume=resume, overwrite=not resume, console=quiet,
                       on_event=lambda e: emit(_metrics_event(e, generative)), should_stop=should_stop)
    except BaseException as e:  # noqa: BLE001 - every failure becomes the job's error
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        err = _error(e, spec.files)
        return {"status": "failed", "error": {k: err[k] for k in ("code", "message", "param")},
                "retryable": err["retryable"]}
    if result.interrupted:
        return {"status": "stopped"}
    return _succeeded(spec, out, result.manifest)


def resolved_hyperparameters(manifest: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI hyperparameters a finished run trained with (what ``auto`` became, as OpenAI's job shows
    them once it has run): ``n_epochs``, ``batch_size`` and, for DPO, ``beta``."""
    resolved, config = manifest.get("resolved") or {}, manifest.get("config") or {}
    out: dict[str, Any] = {}
    epochs = resolved.get("epochs")
    if isinstance(epochs, int | float):
        out["n_epochs"] = int(epochs) if float(epochs).is_integer() else epochs
    if isinstance(resolved.get("batch_size"), int):
        out["batch_size"] = resolved["batch_size"]
    if manifest.get("method") == "dpo" and isinstance(config.get("dpo_beta"), int | float):
        out["beta"] = config["dpo_beta"]
    return out


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
    try:
        final = final_metrics(manifest, generative=bool(get_task(manifest["task"]).generative))
    except (KeyError, TuneforgeError):
        final = {}
    return {"status": "succeeded", "output": str(out), "trained_tokens": tokens, "final_metrics": final,
            "hyperparameters": resolved_hyperparameters(manifest),
            "summary": {"steps": training.get("steps"), "epochs": training.get("epochs"),
                        "final_loss": training.get("final_loss"), "metrics": manifest.get("metrics", {}),
                        "trained_tokens": tokens, **final}}


