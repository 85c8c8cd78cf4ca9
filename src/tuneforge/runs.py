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
from typing import TYPE_CHECKING, Any

from tuneforge.errors import RunError
from tuneforge.utils.fs import atomic_dir, atomic_write_json, storage_errors

if TYPE_CHECKING:
    from tuneforge.models.registry import ResolvedModel

__all__ = ["CHECKPOINTS", "FORMAT_VERSION", "MANIFEST", "RUN_CONFIG", "base_model_path", "check_safetensors",
           "checkpoint_step",
           "complete_checkpoints", "finalize_run", "has_manifest", "is_complete_checkpoint",
           "last_complete_checkpoint", "manifest_path", "read_manifest", "read_run_config", "resolve_base_model",
           "run_name", "write_checkpoint_run", "write_manifest", "write_run_config"]

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
    its ``task`` is a registered task (the one its recorded configuration names), its ``labels`` a list of names,
    and (with ``require_weights``) the folder has safetensors weights that are not cut short."""
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
    config = manifest.get("config")
    trained_for = config.get("task") if isinstance(config, dict) else None
    if trained_for is not None and trained_for != task:
        raise RunError(f"{path}: task {task!r} is not the task the model was trained for ({trained_for!r}, as its "
                       "recorded configuration says).",
                       hint="The manifest was edited; put the task back or train the run again.")
    labels = manifest.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise RunError(f"{path}: labels must be a list of label names, not {type(labels).__name__}.",
                       hint="The manifest was edited or damaged; train the run again.")
    if require_weights:
        weights = sorted(run_dir.glob("*.safetensors"))
        if not weights:
            raise RunError(f"{run_dir} has no .safetensors weights.")
        for file in weights:
            check_safetensors(file)
    return manifest


def check_safetensors(path: str | os.PathLike[str]) -> None:
    """Refuse a damaged safetensors file (truncated by a full disk or a copy that stopped, or not safetensors at
    all) with a :class:`RunError`, by its header alone: the header must be JSON and the tensors it lists must end
    exactly where the file does."""
    path = Path(path)
    damaged = f"{path} is damaged"
    hint = "Train the run again (or copy the folder again from where it was made)."
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or 8 + n > size:
                raise RunError(f"{damaged}: it is cut short or not a safetensors file ({size:,} bytes).", hint=hint)
            header = json.loads(f.read(n).decode("utf-8"))
    except OSError as e:
        raise RunError(f"Cannot read {path}: {e.strerror or e}.") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise RunError(f"{damaged}: its header is not valid.", hint=hint) from None
    try:
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        raise RunError(f"{damaged}: its header is not valid.", hint=hint) from None
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        raise RunError(f"{damaged}: it holds {size:,} bytes of the {expected:,} its header lists (cut short)."
                       if size < expected else f"{damaged}: {size - expected:,} bytes follow its last tensor.",
                       hint=hint)


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


#: files of a Trainer checkpoint that only resuming needs (optimizer, scheduler, RNG and trainer state)
_TRAINER_STATE = re.compile(r"^(optimizer\.pt|scheduler\.pt|scaler\.pt|training_args\.bin|trainer_state\.json|"
                            r"rng_state.*\.pth)$")
#: tokenizer files a finished run holds (copied into a checkpoint's run folder when the checkpoint lacks them)
_TOKENIZER = re.compile(r"^(tokenizer.*|special_tokens_map\.json|added_tokens\.json|vocab\..*|merges\.txt|"
                        r"spiece\.model|sentencepiece.*\.model)$")


def write_checkpoint_run(run_dir: str | os.PathLike[str], checkpoint: str | os.PathLike[str],
                         dest: str | os.PathLike[str]) -> bool:
    """Make ``dest`` a finished run folder of the model saved in ``checkpoint`` (a complete ``checkpoint-N`` of
    the finished run ``run_dir``): the checkpoint's weights and config, the run's tokenizer, and the run's manifest
    with ``training.steps`` set to N and ``checkpoint: {"step": N}`` (its dev ``metrics`` are the final model's,
    so they are emptied). Written into a staging folder and moved into place whole.

    Returns False, writing nothing, when the checkpoint does not hold the files the run's method saves (a method
    that saves its weights its own way): such a checkpoint can be resumed from but not served.
    """
    run_dir, checkpoint, dest = Path(run_dir), Path(checkpoint), Path(dest)
    step = checkpoint_step(checkpoint)
    if step is None or not is_complete_checkpoint(checkpoint):
        raise RunError(f"{checkpoint.name} is not a complete checkpoint-N folder.")
    manifest = read_manifest(run_dir)
    needed = (manifest.get("method_info") or {}).get("files") or []
    if not all((checkpoint / f).is_file() for f in needed) or not any(checkpoint.glob("*.safetensors")):
        return False
    staging = dest.with_name(f".{dest.name}.partial")
    with storage_errors(dest):
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for f in checkpoint.iterdir():
            if f.is_file() and not _TRAINER_STATE.match(f.name):
                _link_or_copy(f, staging / f.name)
        for f in run_dir.iterdir():
            if f.is_file() and _TOKENIZER.match(f.name) and not (staging / f.name).exists():
                _link_or_copy(f, staging / f.name)
        manifest["metrics"] = {}
        manifest["checkpoint"] = {"step": step}
        manifest.setdefault("training", {})["steps"] = step
        write_manifest(staging, manifest)
        read_manifest(staging)  # the weights are whole
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(staging, dest)
    return True


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# --- the base model a run was trained from -----------------------------------------------------------------------


def base_model_path(manifest: dict[str, Any], cache_dir: Path | None = None) -> Path | None:
    """The base model a run was trained from, for methods that save only their own weights (adapters): by its
    registered name when it has one (the installed package), else the folder recorded at training time."""
    from tuneforge.models.registry import BASE_MODELS, resolve_base_model

    base = manifest.get("base_model") or {}
    name = base.get("name")
    if cache_dir is None:
        from tuneforge.settings import Settings

        cache_dir = Settings().cache_dir
    if name in BASE_MODELS:
        return resolve_base_model(name, cache_dir).path
    path = base.get("path") or base.get("model_id")
    if path and Path(path).is_dir():
        return Path(path)
    # an adapter run used as the base: its merged copy (in the cache) was removed; merge the run again
    requested = (manifest.get("config") or {}).get("base_model")
    if isinstance(requested, str) and _is_adapter_run(Path(requested)):
        return _merged_adapter_run(Path(requested), cache_dir).path
    return None


def run_name(run_dir: str | os.PathLike[str]) -> str | None:
    """The name a finished run of any kind (fine-tuning or pretraining) records in its manifest; None when
    ``run_dir`` holds no manifest or the manifest names nothing. Only the manifest's JSON is checked, not its task
    or weights, so a pretraining run (task ``masked-lm``) is named too."""
    if not has_manifest(run_dir):
        return None
    name = _load_json_object(manifest_path(run_dir), "run manifest").get("name")
    return name if isinstance(name, str) and name else None


def _is_adapter_run(folder: Path) -> bool:
    """A finished run whose folder holds its method's weights only (an adapter), not a whole model."""
    return folder.is_dir() and has_manifest(folder) and not (folder / "config.json").is_file()


#: where adapter runs used as base models are kept merged, under the cache folder
MERGED_RUNS = Path("models") / "merged-runs"


def _merged_adapter_run(run_dir: Path, cache_dir: Path) -> ResolvedModel:
    """An adapter run (LoRA, DPO with LoRA ...) as a plain model folder: its adapter merged into its own base
    model, written once into the cache (keyed by the adapter's weights) with the run's tokenizer."""
    import hashlib

    from transformers import AutoTokenizer

    from tuneforge.methods import get_method, method_names
    from tuneforge.models.registry import ResolvedModel
    from tuneforge.tasks import get_task

    manifest = read_manifest(run_dir)
    kind = str(manifest.get("method", "full"))
    name = run_name(run_dir) or run_dir.name
    method = get_method(kind) if kind in method_names() else None
    if method is None or not method.mergeable:
        raise RunError(f"{run_dir} is a {kind} run, which cannot be merged into one model, so it cannot be the base "
                       "of another run.", hint="Use a lora, dpo or full run (or a plain model folder) as the base.")
    digest = hashlib.sha256(str(manifest.get("base_model")).encode())
    for f in sorted(run_dir.glob("*.safetensors")):
        digest.update(f.read_bytes())
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    dest = cache_dir / MERGED_RUNS / f"{safe}-{digest.hexdigest()[:16]}"
    if not (dest / "config.json").is_file():
        base_path = base_model_path(manifest, cache_dir)
        if base_path is None:
            raise RunError(f"{run_dir} holds a {method.name} adapter, but the base model it was trained on cannot be "
                           "found, so it cannot be merged into a base for another run.",
                           hint="Put the base model folder back where the run was trained.")
        from tuneforge.utils.hf import quiet_transformers

        quiet_transformers()
        model = method.merge(method.load(run_dir, manifest, base_path, get_task(manifest["task"])))
        with atomic_dir(dest, overwrite=True) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
            AutoTokenizer.from_pretrained(str(run_dir)).save_pretrained(str(tmp))
            atomic_write_json(tmp / "tuneforge-merged.json", {"run": str(run_dir.resolve()), "method": method.name,
                                                              "base_model": str(base_path)})
    return ResolvedModel(name, dest.resolve(), None)


def resolve_base_model(name_or_path: str, cache_dir: Path) -> ResolvedModel:
    """:func:`tuneforge.models.registry.resolve_base_model`, knowing run folders: a local folder that is a finished
    TuneForge run (a pretrained or fine-tuned model used as a base) is named by its manifest, not by its folder, and
    an adapter run (LoRA) is its adapter merged into its base model (a cached folder)."""
    from dataclasses import replace

    from tuneforge.models.registry import resolve_base_model as resolve

    folder = Path(name_or_path).expanduser()
    if _is_adapter_run(folder):
        return _merged_adapter_run(folder, cache_dir)
    base = resolve(name_or_path, cache_dir)
    if base.spec is None:
        name = run_name(base.path)
        if name is not None:
            return replace(base, name=name)
    return base
