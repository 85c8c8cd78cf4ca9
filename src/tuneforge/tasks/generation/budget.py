"""OpenAI's rules for the number of epochs and the billable token count of a generation training file.

``--epochs auto`` follows OpenAI's fine-tuning default: 3 epochs, raised for small files so that examples x epochs
reaches 100 and lowered for large ones so that it stays within 25,000 (never below 1 nor above 25 epochs).
The billable figure is the tokens of the rendered (truncated) examples times the epochs.
:func:`check_tokens` is what ``tuneforge data check`` reports for a generation file: those figures with the lines
that would be truncated or learn nothing, and one problem per conversation longer than the model's context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tuneforge.errors import DataProblem
from tuneforge.tasks.generation.template import (
    IGNORE_INDEX,
    RenderedSet,
    length_problems,
    render_dataset,
    render_pair,
)

__all__ = ["DEFAULT_EPOCHS", "auto_epochs", "check_tokens", "resolve_epochs", "token_summary"]

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


def resolve_epochs(epochs: float | str, n_examples: int) -> float:
    """``epochs`` as a number: ``"auto"`` is :func:`auto_epochs` of ``n_examples``."""
    if epochs == "auto":
        return float(auto_epochs(n_examples))
    value = float(epochs)
    if not value > 0:
        raise ValueError(f"epochs must be positive or auto, not {epochs!r}")
    return value


def check_tokens(tokenizer: Any, examples: Sequence[dict[str, Any]], lines: Sequence[int | None], *, file: str,
                 max_length: int, epochs: float | str = "auto",
                 context: int | None = None) -> tuple[dict[str, Any], list[DataProblem]]:
    """The token figures of a validated generation file and its conversations longer than ``context`` tokens.

    Conversations (``{"messages"}``) are rendered as training renders them; a preference pair counts both of its
    answers with their shared prompt (``{"prompt", "chosen", "rejected"}``), and is over ``max_length`` when
    either side is. Returns the :func:`token_summary` figures (``kind`` "sft" or "preference"; the lines of the
    examples over ``max_length`` and of those left with no learned token) and one ``context_length_exceeded``
    problem per conversation (for a pair, its longer side) longer than ``context`` (the model's context).
    """
    pairs = bool(examples) and "messages" not in examples[0]
    lengths: list[int] = []  # per example, before truncation
    kept: list[int] = []  # per example, after it
    over: list[int] = []
    untrainable: list[int] = []
    if pairs:
        ctx_lengths: list[int] = []  # the longer side of each pair
        for i, ex in enumerate(examples):
            sides = render_pair(tokenizer, ex)
            lengths.append(sum(len(s.input_ids) for s in sides))
            kept.append(sum(min(len(s.input_ids), max_length) for s in sides))
            over += [i] if any(len(s.input_ids) > max_length for s in sides) else []
            untrainable += [i] if any(all(y == IGNORE_INDEX for y in s.labels[:max_length]) for s in sides) else []
            ctx_lengths.append(max(len(s.input_ids) for s in sides))
    else:
        rendered = render_dataset(tokenizer, examples, max_length=max_length)
        lengths, kept = rendered.lengths, [len(f["input_ids"]) for f in rendered.features]
        over = [i for i, n in enumerate(lengths) if n > max_length]
        untrainable = rendered.untrainable
        ctx_lengths = lengths
    n_epochs = resolve_epochs(epochs, max(1, len(examples)))
    summary = {
        "kind": "preference" if pairs else "sft",
        "examples": len(examples),
        "total_tokens": sum(lengths),
        "max_length": max_length,
        "over_max_length": len(over),
        "over_max_length_lines": [lines[i] for i in over],
        "untrainable": len(untrainable),
        "untrainable_lines": [lines[i] for i in untrainable],
        "tokens_after_truncation": sum(kept),
        "epochs": int(n_epochs) if n_epochs.is_integer() else n_epochs,
        "epochs_rule": "auto" if epochs == "auto" else "given",
        "billable_tokens": int(round(sum(kept) * n_epochs)),
    }
    too_long = length_problems(ctx_lengths, lines, context, file=file) if context else []
    return summary, too_long
