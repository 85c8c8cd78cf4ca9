"""The item tower (a sentence encoder over item text) and its fine-tuning on interactions.

Both towers share one encoder: an item is the mean-pooled, L2-normalised embedding of its text; a user is the
normalised mean of the embeddings of the items they liked. Fine-tuning is contrastive with in-batch negatives
(InfoNCE): for a sampled (user, liked item) pair the user vector is built from a few *other* items the user
liked, and must score the held-back item above the other targets of the batch. What the encoder learns is
"items liked by the same people read alike", from text — which is what lets it place items nobody has
interacted with yet.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.models.tensors import mean_pool

__all__ = ["FineTuneStats", "TextTower"]


@dataclass(frozen=True)
class FineTuneStats:
    steps: int
    first_loss: float
    last_loss: float
    seconds: float


class TextTower:
    """A Hugging Face encoder folder used as the item tower (mean pooling, unit vectors)."""

    def __init__(self, path: Path, *, max_length: int = 64) -> None:
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.logging.set_verbosity_error()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path), use_safetensors=True, trust_remote_code=False)
        self.model.eval()
        self.max_length = min(max_length, int(getattr(self.model.config, "max_position_embeddings", 512)))
        self.dim = int(self.model.config.hidden_size)

    def _forward(self, texts: Sequence[str]) -> Any:
        import torch

        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        hidden = self.model(**enc).last_hidden_state
        return torch.nn.functional.normalize(mean_pool(hidden, enc["attention_mask"]), p=2, dim=1)

    def embed(self, texts: Sequence[str], *, batch_size: int = 128) -> np.ndarray:
        """Unit-length embeddings of ``texts`` (float32, one row per text)."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        self.model.eval()
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = order[b: b + batch_size]
                out[idx] = self._forward([texts[i] for i in idx]).float().numpy()
        return out

    def _layers(self) -> list[Any] | None:
        layers = getattr(getattr(self.model, "encoder", None), "layer", None)
        return list(layers) if layers is not None else None

    def _lower_states(self, texts: Sequence[str], start: int, batch_size: int = 128) -> list[Any]:
        """Each text's hidden states entering layer ``start`` (trimmed to its tokens), computed once."""
        import torch

        states: list[Any] = [None] * len(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")
        self.model.eval()
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = order[b: b + batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**enc, output_hidden_states=True).hidden_states[start]
                for row, i in enumerate(idx):
                    n = int(enc["attention_mask"][row].sum())
                    states[i] = hidden[row, :n].clone()
        return states

    def _top_forward(self, states: Sequence[Any], top: Sequence[Any]) -> Any:
        """Run the top layers on cached lower states; mean-pool and normalise."""
        import torch

        longest = max(int(s.shape[0]) for s in states)
        x = torch.zeros(len(states), longest, self.dim)
        mask = torch.zeros(len(states), longest)
        for r, s in enumerate(states):
            x[r, : s.shape[0]] = s
            mask[r, : s.shape[0]] = 1.0
        additive = (1.0 - mask[:, None, None, :]) * torch.finfo(x.dtype).min
        h = x
        for layer in top:
            out = layer(h, attention_mask=additive)
            h = out[0] if isinstance(out, tuple) else out
        return torch.nn.functional.normalize(mean_pool(h, mask), p=2, dim=1)

    def freeze_below(self, train_layers: int) -> int:
        """Train only the top ``train_layers`` transformer layers (0: all); returns how many are trainable."""
        layers = getattr(getattr(self.model, "encoder", None), "layer", None)
        if train_layers <= 0 or layers is None:
            for p in self.model.parameters():
                p.requires_grad_(True)
            return len(layers) if layers is not None else 0
        for p in self.model.parameters():
            p.requires_grad_(False)
        for layer in list(layers)[-train_layers:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        return min(train_layers, len(layers))

    def fine_tune(self, texts: Sequence[str], liked: Sequence[np.ndarray], *, steps: int, batch_size: int = 64,
                  history_size: int = 5, lr: float = 1e-4, temperature: float = 0.05, train_layers: int = 2,
                  refresh_every: int = 100, seed: int = 0,
                  on_step: Callable[[int, float], None] | None = None) -> FineTuneStats:
        """Contrastive fine-tuning on users' liked items (``liked[u]``: item indices into ``texts``).

        Each step samples ``batch_size`` (user, liked item) pairs — uniformly over liked interactions — and builds
        each user's vector from up to ``history_size`` *other* liked items; the loss is the cross-entropy of
        picking the held-back item among the batch's targets (a target that is the same item is not a negative).

        To fit a CPU budget the user side reads a table of item embeddings that is refreshed every
        ``refresh_every`` steps (gradients flow through the freshly encoded targets only), and only the top
        ``train_layers`` layers are trained, so the frozen lower layers need no backward pass.
        """
        import torch

        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        users = np.array([u for u, items in enumerate(liked) if len(items) >= 2], dtype=np.int64)
        if users.size == 0 or steps <= 0:
            return FineTuneStats(0, math.nan, math.nan, 0.0)
        weights = np.array([len(liked[u]) for u in users], dtype=np.float64)
        weights /= weights.sum()
        self.freeze_below(train_layers)
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        warmup = max(1, steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up over a tenth of the steps, then linear decay
            opt, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
        first = last = math.nan
        t0 = time.perf_counter()
        # With only the top layers trained, the frozen lower layers' outputs are computed once and reused,
        # provided running the top layers on them reproduces the full forward pass (checked on a few items).
        layers = self._layers()
        states: list[Any] | None = None
        top: list[Any] = []
        if layers is not None and 0 < train_layers < len(layers):
            top = layers[-train_layers:]
            states = self._lower_states(texts, len(layers) - train_layers)
            with torch.inference_mode():
                probe = list(range(min(8, len(texts))))
                if not torch.allclose(self._top_forward([states[i] for i in probe], top),
                                      self._forward([texts[i] for i in probe]), atol=1e-4):
                    states = None

        def encode(idx: Sequence[int]) -> Any:
            if states is not None:
                return self._top_forward([states[i] for i in idx], top)
            return self._forward([texts[i] for i in idx])

        def full_table() -> Any:
            with torch.inference_mode():
                self.model.eval()
                return torch.cat([encode(range(b, min(b + 256, len(texts)))) for b in range(0, len(texts), 256)])

        table = full_table()
        eye = torch.eye(batch_size, dtype=torch.bool)
        for step in range(steps):
            batch_users = rng.choice(users, size=batch_size, p=weights)
            targets = np.empty(batch_size, dtype=np.int64)
            queries = torch.empty(batch_size, self.dim)
            for b, u in enumerate(batch_users):
                items = liked[u]
                t = int(rng.integers(len(items)))
                targets[b] = items[t]
                others = np.delete(items, t)
                hist = rng.choice(others, size=min(history_size, others.size), replace=False)
                queries[b] = table[torch.as_tensor(hist)].mean(dim=0)
            queries = torch.nn.functional.normalize(queries, p=2, dim=1)
            self.model.train()
            target_vecs = encode(targets.tolist())
            logits = queries @ target_vecs.T / temperature
            same = torch.as_tensor(targets[:, None] == targets[None, :]) & ~eye
            loss = torch.nn.functional.cross_entropy(logits.masked_fill(same, float("-inf")),
                                                     torch.arange(batch_size))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            last = float(loss.item())
            if step == 0:
                first = last
            if on_step is not None:
                on_step(step + 1, last)
            if refresh_every > 0 and (step + 1) % refresh_every == 0 and step + 1 < steps:
                table = full_table()
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(True)
        return FineTuneStats(steps, first, last, time.perf_counter() - t0)

    def save(self, path: Path) -> None:
        self.model.save_pretrained(str(path), safe_serialization=True)
        self.tokenizer.save_pretrained(str(path))
