"""The reject option: a score of how in-scope an input looks, and the threshold below which it is rejected.

Two scores from the logits ``z`` (at temperature ``T``), higher meaning more in-scope:

- ``msp``: the maximum softmax probability over the known classes (Hendrycks & Gimpel 2017);
- ``energy``: the negative free energy ``T * logsumexp(z_known / T)`` of the known classes' logits (Liu et al. 2020).

:func:`fit_threshold` picks the threshold on a dev set. Its constraint is the reject target: the share of the
in-scope examples the model labels correctly that must stay answered (rejecting an input the model gets wrong anyway
costs no accuracy). With out-of-scope examples in the dev set it maximises their F1 within that constraint;
without, it rejects as much as the constraint allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["REJECT_METHODS", "ThresholdFit", "fit_threshold", "fpr_at_tpr", "in_scope_scores", "oos_auroc",
           "oos_counts"]

#: the scores a threshold can be fitted on
REJECT_METHODS = ("msp", "energy")


def in_scope_scores(logits: np.ndarray, known: np.ndarray, temperature: float = 1.0) -> dict[str, np.ndarray]:
    """Per row of ``logits``: ``best`` (the column of the most likely known class), ``msp`` (its probability under
    the softmax of all columns at ``temperature``), ``energy`` (over the known columns), ``raw`` (its probability at
    temperature 1) and ``head_oos`` (whether a column that is not known, a trained out-of-scope class, is the most
    likely of all)."""
    from scipy.special import logsumexp, softmax

    z = np.asarray(logits, dtype=np.float64)
    known = np.asarray(known, dtype=bool)
    probs = softmax(z / temperature, axis=1)
    raw = softmax(z, axis=1)
    cols = np.flatnonzero(known)
    best = cols[probs[:, cols].argmax(axis=1)]
    rows = np.arange(len(z))
    return {"best": best, "msp": probs[rows, best], "raw": raw[rows, best], "probs": probs,
            "energy": temperature * logsumexp(z[:, cols] / temperature, axis=1),
            "head_oos": ~known[probs.argmax(axis=1)]}


@dataclass(frozen=True)
class ThresholdFit:
    """A fitted threshold and what it gives on the data it was fitted on."""

    threshold: float
    #: share of the correctly labelled in-scope examples still answered
    kept_correct: float
    in_scope_accuracy: float
    oos_precision: float | None
    oos_recall: float | None
    oos_f1: float | None

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def oos_counts(is_oos: np.ndarray, predicted_oos: np.ndarray) -> dict[str, float]:
    """Out-of-scope precision, recall and F1 of ``predicted_oos`` against ``is_oos`` (0 where undefined)."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(np.asarray(is_oos, dtype=bool), np.asarray(predicted_oos, dtype=bool),
                                                 average="binary", pos_label=True, zero_division=0)
    return {"oos_precision": float(p), "oos_recall": float(r), "oos_f1": float(f)}


def fit_threshold(scores_in: np.ndarray, correct_in: np.ndarray, scores_oos: np.ndarray, *, target: float,
                  forced_in: np.ndarray | None = None, forced_oos: np.ndarray | None = None) -> ThresholdFit:
    """The threshold (an input scoring below it is rejected) on dev scores: in-scope examples' ``scores_in`` and
    whether the model labels them right (``correct_in``), out-of-scope examples' ``scores_oos`` (may be empty).
    ``forced_*``: examples rejected whatever the threshold (predicted as a trained out-of-scope class).

    The threshold keeps at least ``target`` of the correct in-scope examples answered; within that, the highest
    out-of-scope F1 (ties: the lower threshold, rejecting less), or without out-of-scope examples the highest
    threshold. Thresholds lie halfway between neighbouring dev scores; "reject nothing" sits just below the lowest.
    """
    s_in = np.asarray(scores_in, dtype=np.float64)
    s_oos = np.asarray(scores_oos, dtype=np.float64)
    correct = np.asarray(correct_in, dtype=bool)
    f_in = np.zeros(len(s_in), bool) if forced_in is None else np.asarray(forced_in, dtype=bool)
    f_oos = np.zeros(len(s_oos), bool) if forced_oos is None else np.asarray(forced_oos, dtype=bool)
    values = np.unique(np.concatenate([s_in, s_oos]))
    if len(values) == 0:
        return ThresholdFit(0.0, 1.0, 0.0, None, None, None)
    lowest = float(np.nextafter(values[0], -np.inf))
    candidates = np.concatenate([[lowest], (values[1:] + values[:-1]) / 2])

    def below(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """For every candidate at once: how many of the masked examples score below it."""
        return np.searchsorted(np.sort(scores[mask]), candidates, side="left")

    n_correct = int(correct.sum())
    kept_correct = n_correct - (below(s_in, correct & ~f_in) + int((correct & f_in).sum()))
    kept_share = kept_correct / n_correct if n_correct else np.ones(len(candidates))
    feasible = kept_share >= target - 1e-12
    feasible[0] = True  # rejecting nothing more than forced is always allowed
    rej_in = below(s_in, ~f_in) + int(f_in.sum())
    rej_oos = below(s_oos, ~f_oos) + int(f_oos.sum())
    if len(s_oos):
        f1 = 2 * rej_oos / np.maximum(1, rej_oos + rej_in + len(s_oos))  # 2tp / (2tp + fp + fn)
        f1 = np.where(feasible, f1, -1.0)
        k = int(np.argmax(f1))  # the first maximum: the lowest threshold
    else:
        k = int(np.flatnonzero(feasible).max())
    n_in = len(s_in)
    precision = recall = f1_k = None
    if len(s_oos):
        tp, fp = int(rej_oos[k]), int(rej_in[k])
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / len(s_oos)
        f1_k = 2 * tp / (2 * tp + fp + (len(s_oos) - tp)) if tp else 0.0
    return ThresholdFit(threshold=float(candidates[k]), kept_correct=float(kept_share[k]),
                        in_scope_accuracy=float(kept_correct[k] / n_in) if n_in else 0.0,
                        oos_precision=precision, oos_recall=recall, oos_f1=f1_k)


def oos_auroc(scores: np.ndarray, is_oos: np.ndarray) -> float | None:
    """AUROC of telling in-scope (positive) from out-of-scope inputs by ``scores``; None unless both occur."""
    from sklearn.metrics import roc_auc_score

    is_oos = np.asarray(is_oos, dtype=bool)
    if is_oos.all() or not is_oos.any():
        return None
    return float(roc_auc_score(~is_oos, np.asarray(scores, dtype=np.float64)))


def fpr_at_tpr(scores: np.ndarray, is_oos: np.ndarray, tpr: float = 0.95) -> float | None:
    """The share of out-of-scope inputs still accepted by the threshold that accepts ``tpr`` of the in-scope ones
    (FPR at 95% TPR, in-scope positive); None unless both occur."""
    from sklearn.metrics import roc_curve

    is_oos = np.asarray(is_oos, dtype=bool)
    if is_oos.all() or not is_oos.any():
        return None
    fpr, tprs, _ = roc_curve(~is_oos, np.asarray(scores, dtype=np.float64))
    return float(fpr[tprs >= tpr - 1e-12].min())
