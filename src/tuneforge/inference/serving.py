"""Serving: loaded models in a memory-bounded LRU cache, and a micro-batcher that runs concurrent requests
through one forward pass.

Inference goes through a small backend interface (:class:`Backend` loads a :class:`LoadedModel`); the PyTorch
backend ships now, and an ONNX Runtime or int8 backend can be added beside it without touching the callers.
Nothing here knows about HTTP or the database.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Backend", "InferenceService", "LoadedModel", "MicroBatcher", "ModelCache", "TorchBackend",
           "model_nbytes"]

log = logging.getLogger(__name__)


class LoadedModel(Protocol):
    """A model ready to serve. ``prepare`` validates one request's inputs (raising DataError) so that a bad
    request fails alone, before it joins a batch; ``run`` runs prepared items of many requests at once."""

    task: str
    nbytes: int

    def prepare(self, inputs: Sequence[Any]) -> list[Any]: ...

    def run(self, items: list[Any]) -> list[Any]: ...

    def count_tokens(self, items: list[Any]) -> int: ...


class Backend(Protocol):
    def load_predictor(self, path: Path) -> LoadedModel: ...

    def load_embedder(self, path: Path) -> LoadedModel: ...


def model_nbytes(model: Any) -> int:
    return int(sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())))


class _TorchPredictor:
    def __init__(self, path: Path) -> None:
        from tuneforge.inference.predictor import load_predictor

        self.predictor = load_predictor(path)
        self.task = self.predictor.task.name
        self.nbytes = model_nbytes(self.predictor.model)

    def prepare(self, inputs: Sequence[Any]) -> list[Any]:
        return self.predictor.to_examples(inputs)

    def run(self, items: list[Any]) -> list[Any]:
        preds = self.predictor.predict_examples(items)
        if self.task == "ner":
            for p in preds:
                p.pop("tags", None)
                for e in p["entities"]:
                    e.pop("words", None)
        return preds

    def count_tokens(self, items: list[Any]) -> int:
        from tuneforge.inference.tokens import count_tokens

        return count_tokens(items, self.task, self.predictor.tokenizer, int(self.predictor.manifest["max_length"]))


class TorchBackend:
    """PyTorch eager inference (fp32)."""

    def load_predictor(self, path: Path) -> LoadedModel:
        return _TorchPredictor(path)

    def load_embedder(self, path: Path) -> LoadedModel:
        from tuneforge.inference.embeddings import Embedder

        return Embedder(path)


class MicroBatcher:
    """Collects requests for up to ``max_wait_s`` (or ``max_items`` items), runs them as one call of ``fn`` in
    its own thread, and hands each request its share of the results. Requests that arrive while ``fn`` runs
    form the next batch, so under load batches grow by themselves."""

    def __init__(self, fn: Callable[[list[Any]], list[Any]], *, max_items: int = 64, max_wait_s: float = 0.002,
                 name: str = "batcher", on_batch: Callable[[int, int, float], None] | None = None) -> None:
        self.fn = fn
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self._q: queue.SimpleQueue[tuple[list[Any], Future[list[Any]]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"tuneforge-{name}", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, items: list[Any], timeout: float | None = None) -> list[Any]:
        if self._closed:
            raise RuntimeError("the model was unloaded; retry the request")
        fut: Future[list[Any]] = Future()
        self._q.put((items, fut))
        return fut.result(timeout=timeout)

    def close(self) -> None:
        self._closed = True
        self._q.put(None)

    def _loop(self) -> None:
        carry: tuple[list[Any], Future[list[Any]]] | None = None
        while True:
            first = carry or self._q.get()
            carry = None
            if first is None:
                return
            batch = [first]
            n = len(first[0])
            deadline = time.monotonic() + self.max_wait_s
            while n < self.max_items:
                remaining = deadline - time.monotonic()
                try:
                    nxt = self._q.get(timeout=remaining) if remaining > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)
                    break
                if n + len(nxt[0]) > self.max_items:
                    carry = nxt
                    break
                batch.append(nxt)
                n += len(nxt[0])
            self._run(batch, n)

    def _run(self, batch: list[tuple[list[Any], Future[list[Any]]]], n: int) -> None:
        items = [x for reqs, _ in batch for x in reqs]
        t0 = time.perf_counter()
        try:
            results = self.fn(items)
        except BaseException as e:  # noqa: BLE001 - delivered to every waiting request
            for _, fut in batch:
                fut.set_exception(e)
            return
        if self.on_batch:
            self.on_batch(n, len(batch), time.perf_counter() - t0)
        i = 0
        for reqs, fut in batch:
            fut.set_result(results[i: i + len(reqs)])
            i += len(reqs)


class _Entry:
    def __init__(self, model: LoadedModel, batcher: MicroBatcher) -> None:
        self.model = model
        self.batcher = batcher


class ModelCache:
    """Loaded models by key, least recently used unloaded first once their total size passes ``capacity``.

    A model larger than the whole capacity is still served (alone). Loads of one key happen once, however many
    requests ask for it at the same time.
    """

    def __init__(self, capacity_bytes: int, *, make_batcher: Callable[[str, LoadedModel], MicroBatcher]) -> None:
        self.capacity = capacity_bytes
        self._make_batcher = make_batcher
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, key: str, load: Callable[[], LoadedModel]) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    return entry
            model = load()
            entry = _Entry(model, self._make_batcher(key, model))
            with self._lock:
                self._entries[key] = entry
                self._loading.pop(key, None)
                self._evict_over_capacity(keep=key)
            log.info("loaded model %s (%.1f MB)", key, model.nbytes / 1e6)
            return entry

    def _evict_over_capacity(self, keep: str) -> None:
        while self.used_bytes > self.capacity and len(self._entries) > 1:
            old_key = next(k for k in self._entries if k != keep)
            self._entries.pop(old_key).batcher.close()
            log.info("unloaded model %s (model cache full)", old_key)

    def evict(self, key: str) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None:
            entry.batcher.close()

    @property
    def used_bytes(self) -> int:
        return sum(e.model.nbytes for e in self._entries.values())

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def close(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), OrderedDict()
        for e in entries:
            e.batcher.close()


class InferenceService:
    """Predictions and embeddings for the API: cached models, batched requests."""

    def __init__(self, *, capacity_bytes: int, max_items: int = 64, max_wait_s: float = 0.002,
                 backend: Backend | None = None, on_batch: Callable[[str, int, int, float], None] | None = None,
                 ) -> None:
        self.backend: Backend = backend or TorchBackend()

        def make_batcher(key: str, model: LoadedModel) -> MicroBatcher:
            cb = (lambda n, r, s: on_batch(model.task, n, r, s)) if on_batch else None
            return MicroBatcher(model.run, max_items=max_items, max_wait_s=max_wait_s, name=key[:40], on_batch=cb)

        self.cache = ModelCache(capacity_bytes, make_batcher=make_batcher)

    def predict(self, key: str, path: Path, inputs: Sequence[Any]) -> tuple[list[Any], int]:
        """Predictions for ``inputs`` and the tokens they took."""
        entry = self.cache.get(f"predict:{key}", lambda: self.backend.load_predictor(path))
        items = entry.model.prepare(inputs)
        return entry.batcher.submit(items), entry.model.count_tokens(items)

    def embed(self, key: str, path: Path, texts: Sequence[Any]) -> tuple[list[Any], int]:
        entry = self.cache.get(f"embed:{key}", lambda: self.backend.load_embedder(path))
        items = entry.model.prepare(texts)
        return entry.batcher.submit(items), entry.model.count_tokens(items)

    def unload(self, key: str) -> None:
        self.cache.evict(f"predict:{key}")
        self.cache.evict(f"embed:{key}")

    def close(self) -> None:
        self.cache.close()
