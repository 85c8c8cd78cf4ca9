"""Small tensor helpers shared by methods, inference and solutions (torch is imported by the caller)."""

from __future__ import annotations

from typing import Any

__all__ = ["mean_pool", "model_nbytes"]


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Average of the token vectors where ``mask`` is 1 (torch tensors: batch x tokens x dim, batch x tokens)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def model_nbytes(model: Any) -> int:
    """Bytes held by a module's parameters and buffers."""
    return int(sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())))
