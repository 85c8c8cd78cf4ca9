"""The optimizer: AdamW with parameter groups.

* no weight decay on biases and LayerNorm weights (as in BERT's recipe);
* the task head (and the pooler, which sentence-embedding checkpoints never trained) learns faster than the
  pretrained encoder: a freshly initialised head at the encoder's small learning rate is what leaves small
  models near chance on a few hundred examples;
* methods that train few weights (LoRA, IA3, adapters ...) want a larger rate on them (``encoder_scale``);
* layer-wise learning-rate decay (ULMFiT, ELECTRA): layer i of L learns at ``lr * decay^(L - i)``, the
  embeddings at ``lr * decay^(L + 1)``.
"""

from __future__ import annotations

import re
from typing import Any

import torch

__all__ = ["build_optimizer", "freeze_lower_layers", "is_head_parameter", "layer_index"]

_LAYER = re.compile(r"\.layers?\.(\d+)\.")
# peft and our adapters wrap the task model; strip their prefixes to find the task model's own names
_WRAPPERS = ("base_model.model.",)


def _inner_name(name: str) -> str:
    for w in _WRAPPERS:
        name = name.removeprefix(w)
    return name


def _prefix(model: Any) -> str:
    inner = getattr(getattr(model, "base_model", None), "model", None)
    if inner is not None and type(model).__module__.startswith("peft"):
        return getattr(inner, "base_model_prefix", "")
    return getattr(model, "base_model_prefix", "")


def is_head_parameter(model: Any, name: str) -> bool:
    name = _inner_name(name)
    prefix = _prefix(model)
    return not name.startswith(prefix + ".") or ".pooler." in name


def layer_index(name: str, n_layers: int) -> int:
    """0 for the embeddings, i + 1 for encoder layer i, n_layers + 1 for anything above the encoder."""
    m = _LAYER.search(name)
    if m:
        return int(m.group(1)) + 1
    return 0 if "embeddings" in name else n_layers + 1


def freeze_lower_layers(model: Any, n: int) -> int:
    """Freeze the embeddings and encoder layers 0..n-1; returns the number of frozen parameters."""
    frozen = 0
    for name, p in model.named_parameters():
        idx = layer_index(name, 10**6)
        if not is_head_parameter(model, name) and idx <= n:
            if p.requires_grad:
                frozen += p.numel()
            p.requires_grad_(False)
    return frozen


def build_optimizer(model: Any, *, lr: float, weight_decay: float, head_lr_multiplier: float = 1.0,
                    encoder_scale: float = 1.0, layer_decay: float | None = None, n_layers: int = 0,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.Optimizer:
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        if is_head_parameter(model, name):
            rate = lr * head_lr_multiplier
        else:
            rate = lr * encoder_scale
            if layer_decay is not None:
                rate *= layer_decay ** (n_layers + 1 - layer_index(name, n_layers))
        groups.setdefault((rate, no_decay), []).append(p)
    param_groups = [{"params": params, "lr": rate, "weight_decay": 0.0 if no_decay else weight_decay}
                    for (rate, no_decay), params in sorted(groups.items(), key=lambda kv: kv[0])]
    # fused AdamW runs on CPU and GPU in torch >= 2.4 and is the fastest implementation on both
    return torch.optim.AdamW(param_groups, lr=lr, betas=betas, eps=eps, fused=True)
