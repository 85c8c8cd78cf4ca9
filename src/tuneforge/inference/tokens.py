"""Token counts of task inputs: what the usage ledger meters for training and prediction."""

from __future__ import annotations

from typing import Any

__all__ = ["count_tokens"]


def count_tokens(examples: list[dict[str, Any]], task: str, tokenizer: Any, max_length: int | None = None) -> int:
    """Tokens of the model inputs the examples make (special tokens included, cut at ``max_length``)."""
    if not examples:
        return 0
    if task == "ner":
        enc = tokenizer([e["tokens"] for e in examples], is_split_into_words=True)
    elif task == "qa":
        enc = tokenizer([e["question"] for e in examples], [e["context"] for e in examples])
    elif any(e.get("text_pair") for e in examples):
        enc = tokenizer([e["text"] for e in examples], [e.get("text_pair") or "" for e in examples])
    else:
        enc = tokenizer([e["text"] for e in examples])
    cap = max_length or 10**9
    return int(sum(min(len(ids), cap) for ids in enc["input_ids"]))
