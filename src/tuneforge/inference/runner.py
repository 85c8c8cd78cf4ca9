"""Batched forward passes over features, sorted by length so that each batch pads as little as possible."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["forward_features", "model_dtype_context"]

_OUTPUT_KEYS = ("logits", "start_logits", "end_logits")


def model_dtype_context(bf16: bool) -> Any:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


@torch.inference_mode()
def forward_features(model: Any, features: Sequence[dict[str, Any]], collator: Callable[[list[dict[str, Any]]], Any],
                     *, batch_size: int = 64, bf16: bool = False,
                     on_batch: Callable[[int], None] | None = None) -> list[tuple[np.ndarray, ...]]:
    """Run ``model`` on every feature and return its outputs per feature, without padding, in input order."""
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    results: list[tuple[np.ndarray, ...] | None] = [None] * len(features)
    model_keys = ("input_ids", "attention_mask", "token_type_ids")
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        batch = collator([{k: features[i][k] for k in model_keys if k in features[i]} for i in idx])
        batch = {k: v.to(device) for k, v in batch.items() if k in model_keys}
        with model_dtype_context(bf16):
            out = model(**batch)
        arrays = [getattr(out, k).float().cpu().numpy() for k in _OUTPUT_KEYS if getattr(out, k, None) is not None]
        per_token = arrays[0].ndim == 3 or len(arrays) > 1
        for j, i in enumerate(idx):
            n = len(features[i]["input_ids"])
            results[i] = tuple(a[j][:n] if per_token else a[j] for a in arrays)
        if on_batch:
            on_batch(len(idx))
    return [r for r in results if r is not None]
