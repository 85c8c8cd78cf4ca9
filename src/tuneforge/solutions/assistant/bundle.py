"""An assistant bundle on disk: writing one (:func:`build_bundle`), reading its assistant.json, giving it a writer
(:func:`set_writer`), and loading its encoder and writer (the layout is in :mod:`.assistant`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge import runs
from tuneforge.errors import ConfigError, DataError, DataProblem, ModelFormatError, RunError
from tuneforge.solutions.assistant.config import AssistantConfig
from tuneforge.solutions.assistant.index import VectorIndex
from tuneforge.solutions.assistant.knowledge import Passage, write_passages
from tuneforge.solutions.assistant.writer import WRITER_FOLDER, Writer, check_writer, load_writer
from tuneforge.utils.fs import atomic_dir, atomic_write_json, storage_errors

__all__ = ["BUNDLE_FILE", "EncoderResolver", "build_bundle", "embed_passages", "encoder_path", "encoder_resolver",
           "load_embedder", "read_bundle_info", "set_writer"]

BUNDLE_FILE = "assistant.json"
FORMAT = "tuneforge-assistant"
VERSION = 1

EncoderResolver = Callable[[str], Path]


def encoder_resolver(settings: Any = None) -> EncoderResolver:
    """Turns a base model name (or folder) into its folder; names in ``settings.base_models`` come first."""
    from tuneforge.models.registry import resolve_base_model
    from tuneforge.settings import Settings

    s = settings or Settings()

    def resolve(name: str) -> Path:
        local = getattr(s, "base_models", {}) or {}
        if name in local:
            return Path(local[name])
        return resolve_base_model(name, s.cache_dir).path

    return resolve


def load_embedder(path: Path) -> Any:
    from tuneforge.inference.embeddings import Embedder

    return Embedder(path, max_length=128)


def embed_passages(embedder: Any, passages: Sequence[Passage]) -> np.ndarray:
    return np.asarray(embedder.embed([p.text for p in passages]), dtype=np.float32)


def bundle_writer(folder: Path, config: AssistantConfig, settings: Any) -> Callable[[], Writer] | None:
    """How to load the bundle's writer: its ``writer/`` run, else the config's ``writer`` (a base chat model or a
    run folder); None when it has neither."""
    if runs.has_manifest(folder / WRITER_FOLDER):
        return lambda: load_writer(folder / WRITER_FOLDER, settings=settings)
    if config.writer:
        spec = config.writer
        return lambda: load_writer(spec, settings=settings)
    return None


def set_writer(folder: str | Path, writer: str | Path, *, answer_mode: str = "generate") -> dict[str, Any]:
    """Give a bundle its writer: a generation run folder is copied into ``writer/`` (so the bundle travels with
    it), a base chat model name is recorded in the config; ``answer_mode`` is set (``generate`` by default).
    Returns the bundle's new config."""
    folder = Path(folder)
    info = read_bundle_info(folder)
    cfg = AssistantConfig.parse({**info.get("config", {}), "answer_mode": answer_mode}, f"{folder / BUNDLE_FILE}")
    path = Path(writer)
    check_writer(path)
    if runs.has_manifest(path):
        with atomic_dir(folder / WRITER_FOLDER, overwrite=True) as tmp, storage_errors(tmp):
            tmp.rmdir()
            shutil.copytree(path, tmp, ignore=shutil.ignore_patterns("checkpoints", "eval-*"))
        cfg.writer = None
        info["writer"] = {"run": str(path), "name": runs.run_name(path)}
    else:
        with storage_errors(folder):
            shutil.rmtree(folder / WRITER_FOLDER, ignore_errors=True)
        cfg.writer = str(writer)
        info["writer"] = {"base": str(writer)}
    info["config"] = cfg.model_dump(mode="json")
    atomic_write_json(folder / BUNDLE_FILE, info)
    return info["config"]


def read_bundle_info(folder: Path) -> dict[str, Any]:
    path = Path(folder) / BUNDLE_FILE
    if not Path(folder).is_dir() or not path.exists():
        raise RunError(f"{folder} is not an assistant bundle (no {BUNDLE_FILE}).",
                       hint="Build one with: tuneforge solution assistant build --kb ... --output FOLDER")
    try:
        info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"{path} is corrupt: {e}") from None
    if info.get("format") != FORMAT:
        raise ModelFormatError(f"{path} is not an assistant bundle file (format {info.get('format')!r}).")
    return info


def encoder_path(folder: Path, encoder: str, resolve: EncoderResolver | None) -> Path:
    if encoder == "intent":
        if not runs.has_manifest(folder / "intent"):
            raise ConfigError("encoder: 'intent' needs the bundle's intent model (intent/), which it does not have")
        return folder / "intent"
    return (resolve or encoder_resolver())(encoder)


def build_bundle(output: Path, *, passages: list[Passage], config: AssistantConfig,
                 intent_run: Path | None = None, qa_run: Path | None = None,
                 resolve_encoder: EncoderResolver | None = None, extra: dict[str, Any] | None = None,
                 overwrite: bool = False, progress: Callable[[str], None] | None = None) -> Path:
    """Write a bundle: copy the intent (and QA) run folders in, embed the passages with the configured encoder,
    build the index. All or nothing: a failure leaves no folder behind. (A writer is added with
    :func:`set_writer`.)"""
    say = progress or (lambda _m: None)
    if not passages:
        raise DataError([DataProblem("knowledge base", None, None, "no passages to index",
                                     "give a knowledge base (--kb) or past tickets (--tickets)")])
    if config.encoder == "intent" and intent_run is None:
        raise ConfigError("encoder: 'intent' needs an intent model (train one from --tickets)")
    with atomic_dir(output, overwrite=overwrite) as tmp:
        with storage_errors(tmp):
            if intent_run is not None:
                shutil.copytree(intent_run, tmp / "intent", ignore=shutil.ignore_patterns("checkpoints"))
            if qa_run is not None:
                shutil.copytree(qa_run, tmp / "qa", ignore=shutil.ignore_patterns("checkpoints"))
        say(f"Embedding {len(passages)} passages...")
        embedder = load_embedder(encoder_path(tmp, config.encoder, resolve_encoder))
        vectors = embed_passages(embedder, passages)
        VectorIndex(vectors, [p.id for p in passages]).save(tmp / "index")
        write_passages(tmp / "passages.jsonl", passages)
        labels: list[str] = []
        if intent_run is not None:
            labels = list(runs.read_manifest(intent_run, require_weights=False).get("labels", []))
        atomic_write_json(tmp / BUNDLE_FILE, {
            "format": FORMAT, "version": VERSION, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": config.model_dump(mode="json"), "encoder": config.encoder, "labels": labels,
            "passages": len(passages), "kinds": _count(p.kind for p in passages), **(extra or {})})
    return output


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out
