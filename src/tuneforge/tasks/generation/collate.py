"""Batching for causal-LM training: padding to the longest item, or padding-free packing.

:class:`PaddingCollator` pads ``input_ids`` with the pad token (right side), ``labels`` with -100 and builds the
``attention_mask``. :class:`PackingCollator` concatenates a batch into one row with ``position_ids`` restarting at
0 for each sequence and no attention mask (transformers' ``DataCollatorWithFlattening``): Llama-family models in
transformers 5 detect the restarts and build a block-diagonal causal mask, so no token attends to another
sequence, and no compute is spent on padding. :func:`left_pad` batches prompts for ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneforge.tasks.generation.template import IGNORE_INDEX

__all__ = ["PackingCollator", "PaddingCollator", "left_pad", "pad_token_id"]


def pad_token_id(tokenizer: Any) -> int:
    """The id used for padding: the tokenizer's pad token, else its eos token, else 0."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


def _as_list(x: Any) -> list[int]:
    return x.tolist() if hasattr(x, "tolist") else list(x)


class PaddingCollator:
    """Pad a batch of ``{"input_ids", "labels"}`` features to its longest item (optionally to a multiple)."""

    def __init__(self, pad_id: int, *, pad_to_multiple_of: int | None = None) -> None:
        self.pad_id = pad_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids = [_as_list(f["input_ids"]) for f in features]
        labels = [_as_list(f["labels"]) if "labels" in f else list(i) for f, i in zip(features, ids, strict=True)]
        width = max(len(x) for x in ids)
        m = self.pad_to_multiple_of
        if m:
            width = -(-width // m) * m
        batch = {
            "input_ids": torch.tensor([x + [self.pad_id] * (width - len(x)) for x in ids], dtype=torch.long),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], dtype=torch.long),
            "labels": torch.tensor([y + [IGNORE_INDEX] * (width - len(y)) for y in labels], dtype=torch.long),
        }
        return batch


class PackingCollator:
    """Padding-free batches: one row of concatenated sequences, ``position_ids`` restarting per sequence.

    A thin wrapper of ``transformers.DataCollatorWithFlattening`` (which also puts -100 on the first label of each
    sequence, so no sequence learns to predict the next one's first token). ``use_cache=False`` travels with the
    batch: with a KV cache transformers builds a plain causal mask over the whole row, which would let sequences
    see each other.
    """

    def __init__(self) -> None:
        from transformers import DataCollatorWithFlattening

        self._flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        kept = [{"input_ids": _as_list(f["input_ids"]),
                 **({"labels": _as_list(f["labels"])} if "labels" in f else {})} for f in features]
        batch = dict(self._flatten(kept, return_tensors="pt"))
        batch["use_cache"] = False
        return batch


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> dict[str, Any]:
    """Prompts padded on the left (so every row ends where generation starts) with their attention mask."""
    import torch

    width = max(len(p) for p in prompts)
    return {
        "input_ids": torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], dtype=torch.long),
        "attention_mask": torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long),
    }
