"""The optimizer: AdamW with parameter groups.

* no weight decay on biases and LayerNorm weights (as in BERT's recipe);
* the task head (and the pooler, which sentence-embedding checkpoints never trained) learns faster than the
  pretrained encoder: a freshly initialised head at the encoder's small learning rate is what leaves small
  models near chance on a few hundred examples.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["build_optimizer", "is_head_parameter"]


def is_head_parameter(model: Any, name: str) -> bool:
    prefix = getattr(model, "base_model_prefix", "")
    return not name.startswith(prefix + ".") or ".pooler." in name


def build_optimizer(model: Any, *, lr: float, weight_decay: float, head_lr_multiplier: float = 1.0,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.Optimizer:
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        groups.setdefault((is_head_parameter(model, name), no_decay), []).append(p)
    param_groups = [
        {"params": params, "lr": lr * (head_lr_multiplier if head else 1.0),
         "weight_decay": 0.0 if no_decay else weight_decay}
        for (head, no_decay), params in sorted(groups.items())
    ]
    # fused AdamW runs on CPU and GPU in torch >= 2.4 and is the fastest implementation on both
    return torch.optim.AdamW(param_groups, lr=lr, betas=betas, eps=eps, fused=True)
