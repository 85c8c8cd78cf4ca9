"""Metrics of generative fine-tuning, named as OpenAI names them in its fine-tuning events.

Token-level (from logits and labels, -100 = not learned): ``<split>_loss`` (mean cross-entropy per learned token)
and ``<split>_mean_token_accuracy`` (share of learned tokens whose argmax is right), with ``split`` one of
``train``, ``valid``, ``full_valid``; plus ``<split>_perplexity``. Text-level (generated text against
references): ``exact_match`` and ``f1`` with SQuAD's normalization (shared with the QA task) and ``rougeL``
(``rouge-score``'s F-measure, stemmed), all on a 0-100 scale. Preference pairs: ``preference_accuracy``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tuneforge.tasks.generation.template import IGNORE_INDEX
from tuneforge.tasks.qa.metrics import squad_em_f1

__all__ = [
    "SPLITS",
    "TokenStats",
    "named_token_metrics",
    "preference_accuracy",
    "rouge_l",
    "sequence_logprobs",
    "text_scores",
    "token_stats",
]

SPLITS = ("train", "valid", "full_valid")


@dataclass
class TokenStats:
    """Sums over learned tokens, so batches of any size and packing combine exactly."""

    loss_sum: float = 0.0
    tokens: int = 0
    correct: int = 0

    def __iadd__(self, other: TokenStats) -> TokenStats:
        self.loss_sum += other.loss_sum
        self.tokens += other.tokens
        self.correct += other.correct
        return self

    @property
    def loss(self) -> float:
        return self.loss_sum / self.tokens if self.tokens else float("nan")

    @property
    def mean_token_accuracy(self) -> float:
        return self.correct / self.tokens if self.tokens else float("nan")


def token_stats(logits: Any, labels: Any) -> TokenStats:
    """Cross-entropy sum, learned-token count and correct argmax count of a batch (labels shifted by one, as the
    causal LM loss does: the logits at position t predict the label at t + 1)."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        shift_logits = logits[..., :-1, :].float().reshape(-1, logits.shape[-1])
        shift_labels = labels[..., 1:].reshape(-1).to(shift_logits.device)
        keep = shift_labels != IGNORE_INDEX
        if not bool(keep.any()):
            return TokenStats()
        picked, targets = shift_logits[keep], shift_labels[keep]
        loss_sum = F.cross_entropy(picked, targets, reduction="sum").item()
        correct = int((picked.argmax(-1) == targets).sum().item())
    return TokenStats(loss_sum, int(keep.sum().item()), correct)


def named_token_metrics(stats: TokenStats, split: str) -> dict[str, float]:
    """``{split}_loss``, ``{split}_mean_token_accuracy`` and ``{split}_perplexity`` (OpenAI's event names)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    loss = stats.loss
    return {f"{split}_loss": loss, f"{split}_mean_token_accuracy": stats.mean_token_accuracy,
            f"{split}_perplexity": math.exp(min(loss, 700.0)) if not math.isnan(loss) else float("nan")}


def sequence_logprobs(logits: Any, labels: Any) -> Any:
    """Sum of the log-probabilities of the learned tokens of each row (a tensor of shape [batch])."""
    import torch

    with torch.no_grad():
        shift_logits = logits[..., :-1, :].float()
        shift_labels = labels[..., 1:].to(shift_logits.device)
        keep = shift_labels != IGNORE_INDEX
        logp = torch.log_softmax(shift_logits, dim=-1)
        picked = logp.gather(-1, shift_labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (picked * keep).sum(-1)


def preference_accuracy(chosen: Sequence[float], rejected: Sequence[float], *,
                        ref_chosen: Sequence[float] | None = None,
                        ref_rejected: Sequence[float] | None = None) -> float:
    """Share of pairs whose implicit reward ranks the preferred answer above the other.

    The reward is the log-probability ratio to the reference model when reference log-probabilities are given
    (DPO's implicit reward), else the plain log-probability (a base model). Ties count as wrong.
    """
    if len(chosen) != len(rejected):
        raise ValueError("chosen and rejected must have the same length")
    if not chosen:
        return float("nan")
    rc = ref_chosen if ref_chosen is not None else [0.0] * len(chosen)
    rr = ref_rejected if ref_rejected is not None else [0.0] * len(rejected)
    wins = sum(1 for c, r, a, b in zip(chosen, rejected, rc, rr, strict=True) if (c - a) > (r - b))
    return wins / len(chosen)


_SCORER: Any = None


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """ROUGE-L F-measure (0-1) of one prediction, the best over its references."""
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    if not references:
        return 0.0
    return max(_SCORER.score(ref, prediction)["rougeL"].fmeasure for ref in references)


def text_scores(predictions: Sequence[str], references: Sequence[Sequence[str] | str]) -> dict[str, Any]:
    """``exact_match``, ``f1`` and ``rougeL`` (0-100, means over examples) plus ``per_example`` rows of
    ``{"exact_match", "f1", "rougeL"}`` (0-1) for the report's worst-examples table."""
    if len(predictions) != len(references):
        raise ValueError("predictions and references must have the same length")
    rows = []
    for pred, ref in zip(predictions, references, strict=True):
        golds = [ref] if isinstance(ref, str) else list(ref)
        em, f1 = squad_em_f1(pred, golds)
        rows.append({"exact_match": em, "f1": f1, "rougeL": rouge_l(pred, golds)})
    n = len(rows)

    def mean(key: str) -> float:
        return 100.0 * sum(r[key] for r in rows) / n if n else float("nan")

    return {"exact_match": mean("exact_match"), "f1": mean("f1"), "rougeL": mean("rougeL"), "per_example": rows}
