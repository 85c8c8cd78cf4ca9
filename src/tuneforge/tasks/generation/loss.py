"""The SFT training loss, computed only where something is learned.

A causal LM's head projects every position onto the whole vocabulary (49,152 entries for SmolLM2), yet in chat
SFT only the assistant tokens carry labels: for SQuAD-as-chat that is a handful of tokens after a prompt of a few
hundred. :func:`sparse_causal_lm_loss` asks the model for the logits of the positions that predict a learned
token only (transformers' ``logits_to_keep`` with a boolean mask) and takes the cross-entropy there: the same
loss as the model's own (``ForCausalLMLoss``: summed over learned tokens, divided by the tokens in the batch),
without the head's forward and backward over the prompt. Used in training; evaluation keeps the full logits
(its token metrics read them).
"""

from __future__ import annotations

from typing import Any

from tuneforge.tasks.generation.template import IGNORE_INDEX

__all__ = ["sparse_causal_lm_loss"]


def sparse_causal_lm_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None,
                          metrics: dict[str, Any] | None = None) -> Any:
    """The mean next-token loss over the learned tokens of ``inputs`` (``input_ids``, ``labels`` and the
    collator's ``attention_mask`` or ``position_ids``), projecting only the positions that predict them.

    ``num_items_in_batch`` (the Trainer's count over a whole gradient-accumulation step) divides the summed loss,
    as in transformers' own loss; without it the mean over this batch is taken. ``metrics``, when given, receives
    ``mean_token_accuracy``: per learned token, 1.0 where the argmax of its logits was right (TRL's training metric,
    from the logits the loss computed anyway).
    """
    import torch
    import torch.nn.functional as F

    inputs = dict(inputs)
    labels = inputs.pop("labels")
    target = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = target != IGNORE_INDEX
    n = int(keep.sum())
    if n == 0:  # nothing learned in this batch: a zero that still reaches the trainable weights' graph
        out = model(**inputs, logits_to_keep=1)
        return out.logits.sum() * 0.0
    out = model(**inputs, logits_to_keep=keep)
    logits = out.logits.reshape(-1, out.logits.shape[-1]).float()
    targets = target[keep[:, :-1]]
    loss = F.cross_entropy(logits, targets, reduction="sum")
    if metrics is not None:
        metrics["mean_token_accuracy"] = (logits.detach().argmax(-1) == targets).float()
    denominator = num_items_in_batch if num_items_in_batch is not None else n
    if torch.is_tensor(denominator):
        denominator = denominator.to(loss.device)
    return loss / denominator
