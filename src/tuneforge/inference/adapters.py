"""Many LoRA runs on one base model: the one home of adapter sharing for serving.

A LoRA run folder holds only its adapter (and its task head); the base model it was trained on is loaded once and
every run of it is served from that copy, its adapter loaded by name on demand and removed, least recently used
first, past ``max_adapters``. Chat models do this in :class:`~tuneforge.inference.serving.ChatModel` (peft's
adapters by name); encoder runs (classification, pairs, NER, QA) in :class:`SharedEncoder`, whose one
micro-batcher runs the requests of every adapter together in mixed batches: each row of a batch gets its own run's
LoRA update and its own task head (:mod:`.mixed_layers`; the pooler and classifier each run trained and saved beside
its adapter; runs may have different label sets, so heads of different widths: their logits are padded to the
widest and cut back to each run's labels before its own task decodes them).

Why not peft's own mixed batches (``model(**batch, adapter_names=[...])``, peft 0.21): they split every adapted
layer's input into one sub-batch per adapter, a few small matrix products each, so a batch of 8 tenants' rows costs
36 x 8 small products and index copies on minilm (about 0.7x the one-adapter rate in-process, measured here on a
loaded machine); and peft's heads per adapter (``modules_to_save``) support plain layers only in mixed batches (not
BERT's pooler) and stack the rows' outputs, which fails for heads of different widths. Here every adapted layer
keeps the LoRA matrices of all loaded adapters stacked (ranks padded with zeros), and a batch gathers each row's
pair and applies them in two batched matrix products: the same arithmetic as peft's
``lora_B(lora_A(x)) * scaling`` (dropout is off at inference).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError
from tuneforge.inference.batching import MicroBatcher
from tuneforge.inference.mixed_layers import MixedLoRA, Rows, install_heads

__all__ = ["AdapterRun", "SharedEncoder", "adapter_name", "is_lora_run", "shares_base"]

log = logging.getLogger(__name__)

_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
_OUTPUT_KEYS = ("logits", "start_logits", "end_logits")
#: the prefix peft gives the weights of a saved adapter (``base_model.model.<module>.<param>``)
_PREFIX = "base_model.model."


def adapter_name(run_dir: Path) -> str:
    """peft's name for the adapter of a run folder (module names allow no dots, so not the model id)."""
    return "run_" + hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def _adapter_config(run_dir: Path) -> dict[str, Any] | None:
    config = Path(run_dir) / "adapter_config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_lora_run(run_dir: Path) -> bool:
    """A run folder holding a LoRA adapter (SFT or DPO with LoRA, or an encoder task) rather than whole weights."""
    config = _adapter_config(run_dir)
    return config is not None and str(config.get("peft_type", "")).upper() == "LORA"


#: LoRA options the stacked mixed batches do not implement (such runs are served as models of their own)
_UNSHARED = ("use_dora", "lora_bias", "fan_in_fan_out", "rank_pattern", "alpha_pattern", "layer_replication",
             "trainable_token_indices", "alora_invocation_tokens")


def shares_base(run_dir: Path, manifest: dict[str, Any], task: Any) -> bool:
    """Whether an encoder run is served from a shared base: a plain LoRA run of an encoder task (none of the
    options in ``_UNSHARED``: DoRA, LoRA biases, per-layer ranks ...; those runs load as models of their own)."""
    config = _adapter_config(run_dir)
    return (config is not None and str(config.get("peft_type", "")).upper() == "LORA"
            and not any(config.get(k) for k in _UNSHARED) and not task.generative and bool(task.auto_model_kind)
            and manifest.get("method") == "lora")


class AdapterLRU:
    """Names of loaded adapters, least recently used first, with what each holds."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Any] = OrderedDict()

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def get(self, name: str) -> Any:
        """The value of ``name`` (now the most recently used)."""
        self._items.move_to_end(name)
        return self._items[name]

    def put(self, name: str, value: Any) -> None:
        self._items[name] = value
        self._items.move_to_end(name)

    def pop(self, name: str) -> Any:
        return self._items.pop(name, None)

    def victims(self, limit: int, keep: set[str]) -> list[str]:
        """The least recently used names past ``limit``, never one in ``keep`` (in use now)."""
        excess = len(self._items) - limit
        return [n for n in self._items if n not in keep][:max(0, excess)]


# --- the runs served from a shared base ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterRun:
    """What one LoRA run adds to its shared base: its adapter's name, manifest, task (bound to the run: its
    calibration and reject option) and tokenizer."""

    name: str
    run_dir: Path
    manifest: dict[str, Any]
    task: Any
    tokenizer: Any

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.get("labels") or [])

    @property
    def max_length(self) -> int:
        return int(self.manifest["max_length"])

    def to_examples(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """Raw inputs as task examples, every bad one reported at once (as :class:`~.predictor.Predictor`)."""
        from tuneforge.errors import DataError, DataProblem

        problems: list[DataProblem] = []
        examples: list[dict[str, Any]] = []
        for i, item in enumerate(inputs):
            parsed = self.task.parse_input(item, i)
            (problems if isinstance(parsed, DataProblem) else examples).append(parsed)
        if problems:
            raise DataError(problems)
        return examples


def _tokenizer_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        f = folder / name
        if f.is_file():
            digest.update(name.encode() + f.read_bytes())
    return digest.hexdigest()


def _base_with_head(manifest: dict[str, Any], base_path: Path, task: Any) -> Any:
    """The base model with a head of the task's kind (as the peft methods build it to load a run onto)."""
    from tuneforge.methods.common import auto_model_class

    labels = manifest.get("labels") or ["start_end"]
    kwargs: dict[str, Any] = {}
    if task.labelled:
        kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                  "label2id": {x: i for i, x in enumerate(labels)}}
    return auto_model_class(task).from_pretrained(str(base_path), use_safetensors=True, trust_remote_code=False,
                                                  ignore_mismatched_sizes=True, **kwargs)


class SharedEncoder:
    """One base encoder with the head kind of a task (sequence or token classification, QA), loaded once, and the
    LoRA runs served from it: their adapters loaded on demand and evicted least recently used first past
    ``max_adapters``; one micro-batcher whose batches mix the requests of every run.

    Adapters are added and removed only in the batcher's thread, between forward passes, so a batch never meets a
    half-loaded adapter and no lock guards the model."""

    def __init__(self, base_path: Path, manifest: dict[str, Any], task: Any, *, max_adapters: int = 64,
                 max_items: int = 64,
                 max_wait_s: float = 0.002, batch_size: int = 64,
                 on_batch: Callable[[int, int, float], None] | None = None) -> None:
        from tuneforge.models.tensors import model_nbytes
        from tuneforge.utils.hf import quiet_transformers

        quiet_transformers()
        self.base_path = Path(base_path)
        self.task = task.name
        self.kind = task.auto_model_kind
        model = _base_with_head(manifest, self.base_path, task)  # the heads are only templates of the runs' own
        model.eval()
        self._heads = install_heads(model)
        self._base_nbytes = model_nbytes(model)
        self.model: Any = model
        self._rows = Rows()
        self._layers: dict[str, MixedLoRA] = {}  # by module name, installed when an adapter first adapts it
        self._slots: dict[str, int] = {}  # adapter name -> its slot in every layer's stack
        self.max_adapters = max_adapters
        self.batch_size = batch_size
        self._loaded = AdapterLRU()  # adapter name -> bytes it holds
        self._runs: OrderedDict[str, AdapterRun] = OrderedDict()  # by adapter name: what requests need
        self._tokenizers: dict[str, Any] = {}  # by digest of the tokenizer files: runs of one base share one
        self._dropped: set[str] = set()
        self._lock = threading.Lock()
        self._adapter_bytes = 0
        self.batcher = MicroBatcher(self._run, max_items=max_items, max_wait_s=max_wait_s,
                                    name=f"adapters-{self.base_path.name[:28]}", on_batch=on_batch)

    @property
    def nbytes(self) -> int:
        return self._base_nbytes + self._adapter_bytes

    @property
    def adapters(self) -> list[str]:
        """Adapters loaded now, least recently used first."""
        return self._loaded.names()

    def run_of(self, run_dir: Path, describe: Callable[[], tuple[dict[str, Any], Any]]) -> AdapterRun:
        """The run in ``run_dir`` as requests use it (``describe()``: its manifest and bound task, read when it is
        first asked for; its adapter is loaded when a batch first needs it)."""
        from transformers import AutoTokenizer

        name = adapter_name(run_dir)
        with self._lock:
            if name in self._runs:
                self._runs.move_to_end(name)
                return self._runs[name]
            manifest, task = describe()
            digest = _tokenizer_digest(Path(run_dir))
            tokenizer = self._tokenizers.get(digest)
            if tokenizer is None:
                tokenizer = self._tokenizers[digest] = AutoTokenizer.from_pretrained(str(run_dir))
            run = AdapterRun(name, Path(run_dir), manifest, task, tokenizer)
            self._runs[name] = run
            self._dropped.discard(name)
            while len(self._runs) > 4 * self.max_adapters:  # descriptions only (the weights are trimmed apart)
                self._runs.popitem(last=False)
            return run

    def predict(self, run: AdapterRun, inputs: Sequence[Any], max_items: int) -> tuple[list[Any], int]:
        """Predictions of ``run`` for ``inputs`` and the tokens they took, through the shared batcher (a large
        request ``max_items`` at a time, so other requests queue between its parts)."""
        items = [(run, ex) for ex in run.to_examples(inputs)]
        results: list[tuple[Any, int]] = []
        for i in range(0, len(items), max_items):
            results.extend(self.batcher.submit(items[i: i + max_items]))
        return [r for r, _ in results], sum(n for _, n in results)

    def drop(self, run_dir: Path) -> None:
        """Forget the run of ``run_dir`` (a deleted model): its adapter is removed before the next batch."""
        name = adapter_name(run_dir)
        with self._lock:
            self._runs.pop(name, None)
            self._dropped.add(name)

    def close(self) -> None:
        self.batcher.close()

    # --- the batcher's thread ---------------------------------------------------------------------------------

    def _layer(self, module: str) -> MixedLoRA:
        import torch

        layer = self._layers.get(module)
        if layer is None:
            linear = self.model.get_submodule(module)
            if not isinstance(linear, torch.nn.Linear) or any(module == h or module.startswith(h + ".")
                                                                for h in self._heads):
                raise ConfigError(f"{module}: LoRA on a {type(linear).__name__} layer is not served from a shared "
                                  "base (linear layers of the encoder only)")
            layer = self._layers[module] = MixedLoRA(linear, self._rows)
            layer.fit(max(self._slots.values(), default=-1) + 2)
            *path, leaf = module.split(".")
            setattr(self.model.get_submodule(".".join(path)) if path else self.model, leaf, layer.module)
        return layer

    def _load(self, run: AdapterRun) -> None:
        from peft.utils import load_peft_weights

        config = _adapter_config(run.run_dir) or {}
        alpha = float(config.get("lora_alpha") or 8)
        weights = load_peft_weights(str(run.run_dir), device="cpu")
        nbytes = 0
        for module, head in self._heads.items():
            prefix = f"{_PREFIX}{module}."
            nbytes += head.add(run.name, {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
        slot = min(set(range(len(self._slots) + 1)) - set(self._slots.values()))
        for layer in self._layers.values():  # every layer has a (zero) slot for every adapter
            layer.fit(slot + 1)
        pairs = {k[len(_PREFIX): -len(".lora_A.weight")]: (v, weights.get(k.replace(".lora_A.", ".lora_B.")))
                 for k, v in weights.items() if k.endswith(".lora_A.weight") and k.startswith(_PREFIX)}
        try:
            for module, (a, b) in pairs.items():
                if b is None:
                    raise ConfigError(f"{run.run_dir.name}: its adapter has lora_A but no lora_B for {module}")
                rank = int(a.shape[0])
                scaling = alpha / (rank ** 0.5 if config.get("use_rslora") else rank)
                self._layer(module).set(slot, a.float(), b.float(), scaling)
                nbytes += int((a.numel() + b.numel()) * 4)
        except BaseException:
            for layer in self._layers.values():
                layer.clear(slot)
            for head in self._heads.values():
                head.remove(run.name)
            raise
        self._slots[run.name] = slot
        self._loaded.put(run.name, nbytes)
        self._adapter_bytes += nbytes
        log.info("loaded adapter %s (%s, %.1f MB)", run.name, run.run_dir, nbytes / 1e6)

    def _remove(self, name: str) -> None:
        slot = self._slots.pop(name)
        for layer in self._layers.values():
            layer.clear(slot)
        for head in self._heads.values():
            head.remove(name)
        self._adapter_bytes -= int(self._loaded.pop(name) or 0)
        log.info("removed adapter %s", name)

    def _prepare_adapters(self, needed: list[str], runs: dict[str, AdapterRun]) -> None:
        with self._lock:
            dropped, self._dropped = self._dropped, set()
        for name in dropped:
            if name in self._loaded and name not in runs:
                self._remove(name)
        for name in needed:
            if name in self._loaded:
                self._loaded.get(name)
            else:
                self._load(runs[name])
        for name in self._loaded.victims(self.max_adapters, keep=set(needed)):
            self._remove(name)

    def _run(self, items: list[tuple[AdapterRun, dict[str, Any]]]) -> list[tuple[Any, int]]:
        runs: dict[str, AdapterRun] = {}
        groups: dict[str, list[int]] = {}
        for i, (run, _) in enumerate(items):
            runs[run.name] = run
            groups.setdefault(run.name, []).append(i)
        self._prepare_adapters(list(groups), runs)
        # each run's examples encoded by its task and tokenizer, then one forward pass over all their features
        encoded = []
        features: list[dict[str, Any]] = []
        names: list[str] = []
        for name, idx in groups.items():
            run = runs[name]
            examples = [items[i][1] for i in idx]
            enc = run.task.encode(examples, run.tokenizer, run.labels, max_length=run.max_length,
                                  stride=int(run.manifest.get("stride", 128)), with_labels=False,
                                  multi_label=bool(run.manifest.get("multi_label")))
            encoded.append((run, idx, examples, enc, len(features)))
            features.extend({k: f[k] for k in _MODEL_KEYS if k in f} for f in enc.features)
            names.extend([name] * len(enc.features))
        first = encoded[0][0]
        outputs = self._forward(features, names, first.task.collator(first.tokenizer))
        results: list[tuple[Any, int] | None] = [None] * len(items)
        for run, idx, examples, enc, start in encoded:
            outs = outputs[start: start + len(enc.features)]
            if run.task.labelled:  # heads padded to the widest label set of the batch: back to this run's
                width = len(run.labels)
                outs = [(o[0][..., :width], *o[1:]) for o in outs]
            preds = run.task.decode(outs, enc, examples, run.labels,
                                    multi_label=bool(run.manifest.get("multi_label")))
            if run.task.sequence_level and not run.task.windowed and len(enc.features) == len(examples):
                # one feature per example, cut at max_length with its special tokens: the tokens it is metered by
                counts = [len(f["input_ids"]) for f in enc.features]
            else:
                counts = [run.task.count_tokens([ex], run.tokenizer, run.max_length) for ex in examples]
            for i, p, n in zip(idx, preds, counts, strict=True):
                results[i] = (run.task.public_prediction(p), n)
        return [r for r in results if r is not None]

    def _forward(self, features: list[dict[str, Any]], names: list[str],
                 collator: Any) -> list[tuple[np.ndarray, ...]]:
        """Every feature through the model, each row with its adapter's LoRA weights and head, in batches sorted
        by length; outputs per feature without padding, in input order."""
        import torch

        order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
        results: list[tuple[np.ndarray, ...] | None] = [None] * len(features)
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                idx = order[b: b + self.batch_size]
                rows = [names[i] for i in idx]
                batch = {k: v for k, v in collator([features[i] for i in idx]).items() if k in _MODEL_KEYS}
                for head in self._heads.values():
                    head.rows = rows
                slots = [self._slots[n] for n in rows]
                self._rows.single = slots[0] if len(set(slots)) == 1 else None
                self._rows.slots = torch.as_tensor(slots, dtype=torch.long)
                out = self.model(**batch)
                arrays = [getattr(out, k).float().numpy() for k in _OUTPUT_KEYS
                          if getattr(out, k, None) is not None]
                per_token = arrays[0].ndim == 3 or len(arrays) > 1
                for j, i in enumerate(idx):
                    n = len(features[i]["input_ids"])
                    results[i] = tuple(a[j][:n] if per_token else a[j] for a in arrays)
        return [r for r in results if r is not None]
