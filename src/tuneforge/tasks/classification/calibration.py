"""Calibrated confidence: temperature scaling (Guo et al. 2017) and how well scores match accuracy.

A classifier's softmax probabilities are usually over- or under-confident. Temperature scaling divides the logits by
one number ``T`` fitted on held-out data (the negative log-likelihood of the true class minimised): the predicted
class never changes, only how sure the model says it is. The expected calibration error (ECE) measures what is left:
the gap between the confidence and the accuracy of the predictions, averaged over equal-width confidence bins.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["ECE_BINS", "RELIABILITY_BINS", "calibration_metrics", "expected_calibration_error", "fit_temperature",
           "log_softmax", "negative_log_likelihood", "reliability_bins"]

#: confidence bins of the ECE (the usual 15 of Guo et al.)
ECE_BINS = 15
#: confidence bins of a reliability diagram (fewer, so that each holds enough examples to read)
RELIABILITY_BINS = 10
#: the temperatures searched (log-uniformly); far outside them a model is broken rather than miscalibrated
_T_RANGE = (0.05, 20.0)


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise log-probabilities of ``logits / temperature`` (float64, numerically stable)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """The mean negative log-probability of each row's ``targets`` class under softmax(logits / temperature)."""
    if len(targets) == 0:
        return float("nan")
    lp = log_softmax(logits, temperature)
    return float(-lp[np.arange(len(targets)), np.asarray(targets)].mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature minimising :func:`negative_log_likelihood` of ``targets`` (a bounded search on log T, from
    0.05 to 20); 1.0 when there is nothing to fit on."""
    from scipy.optimize import minimize_scalar

    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) == 0:
        return 1.0
    z = np.asarray(logits, dtype=np.float64)
    res = minimize_scalar(lambda log_t: negative_log_likelihood(z, targets, math.exp(log_t)),
                          bounds=(math.log(_T_RANGE[0]), math.log(_T_RANGE[1])), method="bounded",
                          options={"xatol": 1e-4})
    best = float(math.exp(res.x))
    # the bounded search may stop a hair worse than no scaling at all on a flat objective: never make it worse
    if negative_log_likelihood(z, targets, best) > negative_log_likelihood(z, targets, 1.0):
        return 1.0
    return best


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bins over [0, 1]; a confidence of exactly 1 falls in the last one."""
    return np.minimum((np.asarray(confidence, dtype=np.float64) * n_bins).astype(np.int64), n_bins - 1)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of (share of examples in the bin) x |accuracy - mean confidence|:
    0 is perfectly calibrated. NaN without examples."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if len(conf) == 0:
        return float("nan")
    idx = _bin_index(conf, n_bins)
    total = 0.0
    for b in np.unique(idx):
        m = idx == b
        total += m.mean() * abs(hit[m].mean() - conf[m].mean())
    return float(total)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray,
                     n_bins: int = RELIABILITY_BINS) -> dict[str, Any]:
    """What a reliability diagram draws: per equal-width confidence bin, its mean confidence, its accuracy and how
    many examples fell in it (empty bins hold None)."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    idx = _bin_index(conf, n_bins)
    means: list[float | None] = []
    accs: list[float | None] = []
    counts: list[int] = []
    for b in range(n_bins):
        m = idx == b
        n = int(m.sum())
        counts.append(n)
        means.append(round(float(conf[m].mean()), 6) if n else None)
        accs.append(round(float(hit[m].mean()), 6) if n else None)
    return {"edges": [round(b / n_bins, 6) for b in range(n_bins + 1)], "confidence": means, "accuracy": accs,
            "count": counts}


def calibration_metrics(confidence: np.ndarray, correct: np.ndarray,
                        uncalibrated: np.ndarray | None = None) -> dict[str, Any]:
    """``ece`` of the scores and their ``reliability`` bins; with the ``uncalibrated`` scores of the same
    predictions (before temperature scaling), ``ece_uncalibrated`` and the bins of both. Empty without examples."""
    if len(confidence) == 0:
        return {}
    out: dict[str, Any] = {"ece": expected_calibration_error(confidence, correct)}
    if uncalibrated is None:
        out["reliability"] = {"scores": reliability_bins(confidence, correct)}
        return out
    out["ece_uncalibrated"] = expected_calibration_error(uncalibrated, correct)
    out["reliability"] = {"uncalibrated": reliability_bins(uncalibrated, correct),
                          "calibrated": reliability_bins(confidence, correct)}
    return out
