"""OpenAI's rules for the number of epochs and the billable token count of a generation training file.

``--epochs auto`` follows OpenAI's fine-tuning default: 3 epochs, raised for small files so that examples x epochs
reaches 100 and lowered for large ones so that it stays within 25,000 (never below 1 nor above 25 epochs).
The billable figure is the tokens of the rendered (truncated) examples times the epochs.
"""

from __future__ import annotations

import math
from typing import Any

from tuneforge.tasks.generation.template import RenderedSet

__all__ = ["DEFAULT_EPOCHS", "auto_epochs", "token_summary"]

DEFAULT_EPOCHS = 3
_MIN_TARGET_EXAMPLES, _MAX_TARGET_EXAMPLES = 100, 25_000
_MIN_EPOCHS, _MAX_EPOCHS = 1, 25


def auto_epochs(n_examples: int) -> int:
    """Epochs for ``n_examples`` training examples by OpenAI's rule."""
    if n_examples <= 0:
        raise ValueError("n_examples must be positive")
    if n_examples * DEFAULT_EPOCHS < _MIN_TARGET_EXAMPLES:
        return min(_MAX_EPOCHS, math.ceil(_MIN_TARGET_EXAMPLES / n_examples))
    if n_examples * DEFAULT_EPOCHS > _MAX_TARGET_EXAMPLES:
        return max(_MIN_EPOCHS, _MAX_TARGET_EXAMPLES // n_examples)
    return DEFAULT_EPOCHS


def token_summary(rendered: RenderedSet, *, epochs: int, max_length: int | None) -> dict[str, Any]:
    """What ``data check`` prints: examples, tokens, examples over ``max_length``, trained and billable tokens."""
    trained_tokens = sum(len(f["input_ids"]) for f in rendered.features)
    return {
        "examples": len(rendered.features),
        "total_tokens": rendered.total_tokens,
        "max_length": max_length,
        "over_max_length": rendered.truncated,
        "untrainable": len(rendered.untrainable),
        "tokens_after_truncation": trained_tokens,
        "epochs": epochs,
        "billable_tokens": trained_tokens * epochs,
    }
