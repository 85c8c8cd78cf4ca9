"""The run-folder contract: what a finished (or interrupted) TuneForge run folder holds, and the only code that
knows its file names.

A run folder is complete exactly when its manifest (``tuneforge.json``) exists: weights and tokenizer are moved
into place first and the manifest is written last, atomically. An interrupted run has ``run-config.json`` (the
configuration it was started with) and ``checkpoints/checkpoint-N`` folders instead; a checkpoint is complete when
transformers' ``trainer_state.json`` (written last by ``Trainer``) is in it.

Everything else (training, inference, jobs, export, solutions) reads and writes run folders through these
functions, so a format change has one home.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge.errors import RunError
from tuneforge.utils.fs import atomic_write_json, storage_errors

__all__ = ["CHECKPOINTS", "FORMAT_VERSION", "MANIFEST", "RUN_CONFIG", "base_model_path", "checkpoint_step",
           "complete_checkpoints", "finalize_run", "has_manifest", "is_complete_checkpoint",
           "last_complete_checkpoint", "manifest_path", "read_manifest", "read_run_config", "write_manifest",
           "write_run_config"]

MANIFEST = "tuneforge.json"
RUN_CONFIG = "run-config.json"
CHECKPOINTS = "checkpoints"
#: the manifest format this code writes; older ones it can still read are listed in ``_READABLE_VERSIONS``
FORMAT_VERSION = 1
_READABLE_VERSIONS = frozenset({1})
_CKPT = re.compile(r"^checkpoint-(\d+)$")
#: the largest manifest read (a real one is a few kB; a bigger file is not a manifest)
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def manifest_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / MANIFEST


def has_manifest(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` holds a finished run (its manifest exists; it may still be invalid)."""
    return manifest_path(run_dir).is_file()


def _load_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > _MAX_MANIFEST_BYTES:
            raise RunError(f"{path} is {size:,} bytes: too large to be a TuneForge {what}.")
        raw = path.read_bytes()
    except OSError as e:
        raise RunError(f"Cannot read {path}: {e.strerror or e}.") from None
    if not raw.strip():
        raise RunError(f"{path} is empty: the {what} was damaged.",
                       hint="Train the run again (or restore the file from a copy).")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RunError(f"{path} is not UTF-8 text (byte {e.start}): the {what} was damaged.",
                       hint="Train the run again (or restore the file from a copy).") from None
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise RunError(f"{path} is not valid JSON ({e}): the {what} was damaged.",
                       hint="Train the run again (or restore the file from a copy).") from None
    if not isinstance(obj, dict):
        raise RunError(f"{path} holds a JSON {type(obj).__name__}, not an object: the {what} was damaged.")
    return obj


def read_manifest(run_dir: str | os.PathLike[str], *, require_weights: bool = True) -> dict[str, Any]:
    """The validated manifest of a finished run folder; a :class:`RunError` saying what is wrong otherwise.

    Checks: the folder and its manifest exist, the manifest is a UTF-8 JSON object of a known format version,
    its ``task`` is a registered task and (with ``require_weights``) the folder has safetensors weights."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a folder.", hint="Pass the --output folder of a `tuneforge train` run.")
    path = run_dir / MANIFEST
    if not path.is_file():
        interrupted = (run_dir / RUN_CONFIG).exists()
        raise RunError(f"{run_dir} holds no finished TuneForge model (no {MANIFEST}).",
                       hint=f"Finish it with: tuneforge train --resume --output {run_dir}" if interrupted else
                       "Pass the --output folder of a finished `tuneforge train` run.")
    manifest = _load_json_object(path, "manifest")
    version = manifest.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version not in _READABLE_VERSIONS:
        raise RunError(f"{path}: format_version {version!r} is not one this TuneForge reads "
                       f"({', '.join(map(str, sorted(_READABLE_VERSIONS)))}).",
                       hint="Use the TuneForge version that wrote the run, or train it again.")
    task = manifest.get("task")
    from tuneforge.tasks import task_names

    if not isinstance(task, str) or task not in task_names():
        raise RunError(f"{path}: task {task!r} is not a known task (one of: {', '.join(task_names())}).",
                       hint="The manifest was edited or damaged; train the run again.")
    if require_weights and not any(run_dir.glob("*.safetensors")):
        raise RunError(f"{run_dir} has no .safetensors weights.")
    return manifest


def write_manifest(run_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (it is what makes a run folder finished, so it is written last)."""
    manifest.setdefault("format_version", FORMAT_VERSION)
    atomic_write_json(Path(run_dir) / MANIFEST, manifest)


def read_run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``run-config.json`` of an unfinished run: ``{"config": {...}, "started_at": ...}``."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise RunError(f"{run_dir} has no {RUN_CONFIG}: it is not a run started by `tuneforge train`.",
                       hint="Start it with `tuneforge train ... --output` first.")
    return _load_json_object(path, "run configuration")


def write_run_config(run_dir: str | os.PathLike[str], content: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / RUN_CONFIG, content)


def remove_run_config(run_dir: str | os.PathLike[str]) -> None:
    (Path(run_dir) / RUN_CONFIG).unlink(missing_ok=True)


def has_run_config(run_dir: str | os.PathLike[str]) -> bool:
    return (Path(run_dir) / RUN_CONFIG).is_file()


# --- checkpoints: the one completeness rule ----------------------------------------------------------------------


def checkpoint_step(folder: str | os.PathLike[str]) -> int | None:
    """The step of a ``checkpoint-N`` folder (None for any other name)."""
    m = _CKPT.match(Path(folder).name)
    return int(m.group(1)) if m else None


def is_complete_checkpoint(folder: str | os.PathLike[str]) -> bool:
    """Trainer writes ``checkpoint-N`` in place and ``trainer_state.json`` last: a folder without it was
    interrupted while saving and cannot be resumed from."""
    folder = Path(folder)
    return checkpoint_step(folder) is not None and folder.is_dir() and (folder / "trainer_state.json").is_file()


def checkpoints_dir(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / CHECKPOINTS


def complete_checkpoints(ckpt_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``ckpt_dir`` (a run's ``checkpoints/`` folder), oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(step, d) for d in ckpt_dir.iterdir()
             if (step := checkpoint_step(d)) is not None and is_complete_checkpoint(d)]
    return sorted(found)


def last_complete_checkpoint(ckpt_dir: str | os.PathLike[str],
                             on_remove: Callable[[Path], None] | None = None) -> str | None:
    """The newest complete checkpoint in ``ckpt_dir``, or None. Newer incomplete ones (a run killed while saving)
    are removed first (``on_remove`` is told of each), so the trainer does not pick them up."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    found = sorted(((step, d) for d in ckpt_dir.iterdir() if d.is_dir() and (step := checkpoint_step(d)) is not None),
                   reverse=True)
    for _, d in found:
        if is_complete_checkpoint(d):
            return str(d)
        if on_remove is not None:
            on_remove(d)
        shutil.rmtree(d, ignore_errors=True)
    return None


# --- finishing a run ---------------------------------------------------------------------------------------------


def finalize_run(out: Path, manifest: dict[str, Any], write_files: Callable[[Path], dict[str, Any] | None], *,
                 keep_checkpoints: bool) -> None:
    """Make ``out`` a finished run: ``write_files(staging)`` writes weights, tokenizer and the rest into a
    staging folder (returning manifest info to merge under ``method_info``, or None), they are moved into ``out``,
    then the manifest is written last; the run configuration (and, unless kept, the checkpoints) are removed."""
    staging = out / ".final.partial"
    with storage_errors(out):
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        info = write_files(staging)
        if info:
            manifest.setdefault("method_info", {}).update(info)
        for f in staging.iterdir():
            os.replace(f, out / f.name)
        staging.rmdir()
        write_manifest(out, manifest)
        remove_run_config(out)
        if not keep_checkpoints:
            shutil.rmtree(checkpoints_dir(out), ignore_errors=True)


# --- the base model a run was trained from -----------------------------------------------------------------------


def base_model_path(manifest: dict[str, Any], cache_dir: Path | None = None) -> Path | None:
    """The base model a run was trained from, for methods that save only their own weights (adapters): by its
    registered name when it has one (the installed package), else the folder recorded at training time."""
    from tuneforge.models.registry import BASE_MODELS, resolve_base_model

    base = manifest.get("base_model") or {}
    name = base.get("name")
    if name in BASE_MODELS:
        if cache_dir is None:
            from tuneforge.settings import Settings

            cache_dir = Settings().cache_dir
        return resolve_base_model(name, cache_dir).path
    path = base.get("path") or base.get("model_id")
    return Path(path) if path and Path(path).is_dir() else None
