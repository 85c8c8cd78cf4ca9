"""Serving: loaded models in a memory-bounded LRU cache, each with a micro-batcher that runs concurrent requests
through one forward pass.

Models are loaded by a backend chosen by name (:func:`~tuneforge.inference.backends.get_backend`; PyTorch by
default). Nothing here knows about HTTP or the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.inference.backends import Backend, LoadedModel, get_backend
from tuneforge.inference.batching import MicroBatcher
from tuneforge.utils.lru import LRUCache

__all__ = ["CachedModel", "InferenceService", "ModelCache"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedModel:
    model: LoadedModel
    batcher: MicroBatcher


class ModelCache:
    """Loaded models by key, least recently used unloaded first (their batcher closed) once their total size
    passes ``capacity_bytes``.

    A model larger than the whole capacity is still served (alone). Loads of one key happen once, however many
    requests ask for it at the same time.
    """

    def __init__(self, capacity_bytes: int, *, make_batcher: Callable[[str, LoadedModel], MicroBatcher]) -> None:
        self._make_batcher = make_batcher
        self._lru: LRUCache[CachedModel] = LRUCache(capacity_bytes, weigh=lambda e: e.model.nbytes,
                                                    on_evict=self._unloaded)

    @property
    def capacity(self) -> int:
        return int(self._lru.capacity)

    def get(self, key: str, load: Callable[[], LoadedModel]) -> CachedModel:
        def load_entry() -> CachedModel:
            model = load()
            log.info("loaded model %s (%.1f MB)", key, model.nbytes / 1e6)
            return CachedModel(model, self._make_batcher(key, model))

        return self._lru.get(key, load_entry)

    @staticmethod
    def _unloaded(key: str, entry: CachedModel) -> None:
        entry.batcher.close()
        log.info("unloaded model %s", key)

    def evict(self, key: str) -> None:
        self._lru.evict(key)

    @property
    def used_bytes(self) -> int:
        return int(self._lru.used)

    def keys(self) -> list[str]:
        return self._lru.keys()

    def close(self) -> None:
        self._lru.clear()


def _run_and_count(model: LoadedModel, items: list[Any]) -> list[tuple[Any, int]]:
    """Each item's result and its tokens, both in the batcher's thread: a fast tokenizer is not thread-safe (a
    call in another thread can switch off the truncation or padding of one under way, and the batch then fails
    or is cut wrong), so every call of a model's tokenizer happens in its batcher's one thread."""
    return [(r, model.count_tokens([x])) for r, x in zip(model.run(items), items, strict=True)]


def _split(results: list[tuple[Any, int]]) -> tuple[list[Any], int]:
    return [r for r, _ in results], sum(n for _, n in results)


class InferenceService:
    """Predictions and embeddings for the API: cached models, batched requests.

    ``backend`` is a registered backend name (``"torch"``) or a backend object."""

    def __init__(self, *, capacity_bytes: int, max_items: int = 64, max_wait_s: float = 0.002,
                 backend: str | Backend = "torch", on_batch: Callable[[str, int, int, float], None] | None = None,
                 ) -> None:
        self.backend: Backend = get_backend(backend) if isinstance(backend, str) else backend

        def make_batcher(key: str, model: LoadedModel) -> MicroBatcher:
            cb = (lambda n, r, s: on_batch(model.task, n, r, s)) if on_batch else None
            return MicroBatcher(lambda items: _run_and_count(model, items), max_items=max_items,
                                max_wait_s=max_wait_s, name=key[:40], on_batch=cb)

        self.cache = ModelCache(capacity_bytes, make_batcher=make_batcher)
        self.max_items = max_items

    def predict(self, key: str, path: Path, inputs: Sequence[Any]) -> tuple[list[Any], int]:
        """Predictions for ``inputs`` and the tokens they took."""
        entry = self.cache.get(f"predict:{key}", lambda: self.backend.load_predictor(path))
        return self._submit(entry, entry.model.prepare(inputs))

    def embed(self, key: str, path: Path, texts: Sequence[Any]) -> tuple[list[Any], int]:
        """Embeddings of ``texts`` and the tokens they took."""
        entry = self.cache.get(f"embed:{key}", lambda: self.backend.load_embedder(path))
        return self._submit(entry, entry.model.prepare(texts))

    def _submit(self, entry: CachedModel, items: list[Any]) -> tuple[list[Any], int]:
        """A large request goes to the batcher ``max_items`` at a time, one part after the other: the requests
        that arrive meanwhile queue between its parts instead of waiting behind the whole of it."""
        results: list[tuple[Any, int]] = []
        for i in range(0, len(items), self.max_items):
            results.extend(entry.batcher.submit(items[i: i + self.max_items]))
        return _split(results)

    def unload(self, key: str) -> None:
        self.cache.evict(f"predict:{key}")
        self.cache.evict(f"embed:{key}")

    def close(self) -> None:
        self.cache.close()
