"""What a federated round exchanges: the trainable tensors of a LoRA model (the adapter matrices and the task head),
by name, as numpy arrays; the frozen base model never leaves a client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["full_model_bytes", "get_trainable", "payload_bytes", "set_trainable", "weighted_mean"]


def get_trainable(model: Any) -> dict[str, np.ndarray]:
    """The trainable parameters of ``model`` (name -> float32 copy), in the model's order."""
    return {name: p.detach().cpu().float().numpy().copy() for name, p in model.named_parameters() if p.requires_grad}


def set_trainable(model: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Load ``arrays`` into the trainable parameters of ``model``; the names must match exactly."""
    import torch

    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing, extra = sorted(set(params) - set(arrays)), sorted(set(arrays) - set(params))
    if missing or extra:
        raise ValueError(f"federated weights do not fit the model: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(torch.as_tensor(np.asarray(arrays[name]), dtype=p.dtype))


def payload_bytes(arrays: Mapping[str, np.ndarray]) -> int:
    """Bytes of the tensors in one message (one direction, one client)."""
    return int(sum(np.asarray(a).nbytes for a in arrays.values()))


def full_model_bytes(model: Any) -> int:
    """Bytes of every parameter of ``model`` in float32: what sending the whole model would cost."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * 4
    return total


def weighted_mean(updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> dict[str, np.ndarray]:
    """The example-weighted mean of client updates (what FedAvg computes), for checking an aggregate."""
    total = float(sum(weights))
    out: dict[str, np.ndarray] = {}
    for k in updates[0]:
        acc = np.zeros_like(np.asarray(updates[0][k]), dtype=np.float64)
        for u, w in zip(updates, weights, strict=True):
            acc += np.asarray(u[k], dtype=np.float64) * (w / total)
        out[k] = acc.astype(np.float32)
    return out
