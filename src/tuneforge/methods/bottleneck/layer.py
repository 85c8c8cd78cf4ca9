"""The adapter module and where it goes in a transformer layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["TARGETS", "AdaptedLinear", "Adapter", "insert_adapters"]

#: the output projections of the attention and feed-forward sublayers, by architecture (the adapter runs on their
#: output, before the residual and LayerNorm that follow, as in Houlsby et al.)
TARGETS: dict[str, tuple[str, ...]] = {
    "bert": ("attention.output.dense", "output.dense"),
    "roberta": ("attention.output.dense", "output.dense"),
    "xlm-roberta": ("attention.output.dense", "output.dense"),
    "electra": ("attention.output.dense", "output.dense"),
    "mpnet": ("attention.attn.o", "output.dense"),
}


class Adapter(nn.Module):
    """h + up(act(down(h))); ``up`` starts at zero, so the adapter is the identity at initialisation."""

    def __init__(self, hidden: int, size: int) -> None:
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.act = nn.GELU()
        self.up = nn.Linear(size, hidden)
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


class AdaptedLinear(nn.Module):
    """A frozen projection followed by an adapter (wraps the original module; its weights keep their names)."""

    def __init__(self, base: nn.Linear, size: int) -> None:
        super().__init__()
        self.base = base
        self.adapter = Adapter(base.out_features, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.base(x))


def insert_adapters(model: Any, size: int) -> list[str]:
    """Wrap every target projection of ``model``'s encoder layers with an adapter; returns the wrapped paths."""
    model_type = getattr(model.config, "model_type", "")
    if model_type not in TARGETS:
        from tuneforge.errors import ConfigError

        raise ConfigError(f"method: bottleneck adapters do not know where to go in a '{model_type}' model "
                          f"(known: {', '.join(sorted(TARGETS))})")
    attn, ffn = TARGETS[model_type]
    wrapped = []
    for name, module in list(model.named_modules()):
        if ".layer." not in name or not isinstance(module, nn.Linear):
            continue
        is_attn = name.endswith("." + attn)
        is_ffn = name.endswith("." + ffn) and ".attention." not in name
        if not (is_attn or is_ffn):
            continue
        parent_name, child = name.rsplit(".", 1)
        parent = model.get_submodule(parent_name)
        setattr(parent, child, AdaptedLinear(module, size))
        wrapped.append(name)
    return wrapped
