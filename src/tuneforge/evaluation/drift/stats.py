"""The drift statistics, on plain arrays (no model here), with the definitions of Evidently's text and embedding
drift methods (``evidently`` itself is not a dependency: it would add about 25 packages, a web server and a
telemetry client among them):

- **domain classifier** (Evidently's embeddings method ``model``): a logistic regression learns to tell the
  reference vectors from the current ones; its ROC AUC, out of fold (stratified k-fold), is the score. 0.5: they
  cannot be told apart; 1.0: every current vector is recognised.
- **MMD** (Evidently's ``mmd``): the unbiased estimate of the squared maximum mean discrepancy with an RBF kernel
  whose bandwidth is the median pairwise distance of the pooled sample (the median heuristic); its p-value by a
  permutation test (the share of random relabellings whose MMD is at least the observed one).
- **PSI** of two categorical distributions (Evidently's ``psi``): ``sum((cur - ref) * ln(cur / ref))`` over the
  categories, shares of 0 replaced by 0.0001; 0.1 and more is commonly read as a shift, 0.25 a large one.
- **chi-square** (Evidently's ``chisquare``): Pearson's test of the current counts against the counts the
  reference shares expect; a small p-value is a shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MMDResult", "chi_square_p", "domain_classifier_auc", "mmd_rbf", "psi", "shares"]

#: the share a category with no example gets in PSI (Evidently's value), so that the logarithm is defined
PSI_EPS = 1e-4


def domain_classifier_auc(reference: np.ndarray, current: np.ndarray, *, folds: int = 5, seed: int = 0,
                          c: float = 1.0) -> float:
    """ROC AUC of a logistic regression telling ``current`` rows (1) from ``reference`` rows (0), each row scored
    by the model of the fold that did not see it. Classes are weighted by their size, so a small window against a
    large reference is no easier to detect for being small."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.concatenate([reference, current]).astype(np.float64)
    y = np.concatenate([np.zeros(len(reference), dtype=int), np.ones(len(current), dtype=int)])
    k = max(2, min(folds, len(reference), len(current)))
    if min(len(reference), len(current)) < 2:
        raise ValueError("the domain classifier needs at least 2 reference and 2 current rows")
    clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    scores = cross_val_predict(clf, x, y, cv=StratifiedKFold(n_splits=k, shuffle=True, random_state=seed),
                               method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


@dataclass(frozen=True)
class MMDResult:
    value: float       # the unbiased MMD² estimate
    p_value: float     # permutation test: share of relabellings with an MMD² at least ``value``
    bandwidth: float   # the RBF kernel's sigma (median pairwise distance)
    permutations: int


def _mmd2(k: np.ndarray, first: np.ndarray) -> float:
    """Unbiased MMD² of the split ``first`` (a boolean mask) against the rest, from the pooled kernel ``k`` (its
    diagonal already zero)."""
    a, b = first, ~first
    m, n = int(a.sum()), int(b.sum())
    kxx = k[np.ix_(a, a)].sum() / (m * (m - 1))
    kyy = k[np.ix_(b, b)].sum() / (n * (n - 1))
    kxy = k[np.ix_(a, b)].sum() / (m * n)
    return float(kxx + kyy - 2 * kxy)


def mmd_rbf(reference: np.ndarray, current: np.ndarray, *, permutations: int = 200, seed: int = 0) -> MMDResult:
    """MMD² of two samples with an RBF kernel (median heuristic), and its permutation p-value."""
    if min(len(reference), len(current)) < 2:
        raise ValueError("MMD needs at least 2 reference and 2 current rows")
    x = np.concatenate([reference, current]).astype(np.float64)
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    iu = np.triu_indices(len(x), k=1)
    sigma = float(np.sqrt(np.median(d2[iu])))
    if sigma <= 0:
        sigma = 1.0  # every point the same: any bandwidth gives MMD 0
    k = np.exp(-d2 / (2 * sigma * sigma))
    np.fill_diagonal(k, 0.0)
    first = np.zeros(len(x), dtype=bool)
    first[: len(reference)] = True
    observed = _mmd2(k, first)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        hits += _mmd2(k, rng.permutation(first)) >= observed
    return MMDResult(observed, (hits + 1) / (permutations + 1), sigma, permutations)


def shares(labels: Sequence[str], categories: Sequence[str]) -> np.ndarray:
    """The share of each of ``categories`` among ``labels`` (0 for an empty list)."""
    counts = np.array([sum(1 for x in labels if x == c) for c in categories], dtype=np.float64)
    return counts / counts.sum() if counts.sum() else counts


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two share vectors over the same categories."""
    ref = np.where(np.asarray(reference, dtype=np.float64) == 0, PSI_EPS, reference)
    cur = np.where(np.asarray(current, dtype=np.float64) == 0, PSI_EPS, current)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def chi_square_p(reference_shares: np.ndarray, current_counts: np.ndarray) -> float:
    """p-value of Pearson's chi-square test of ``current_counts`` against the counts ``reference_shares`` expect
    (a category the reference never has gets the PSI epsilon's share, so that it is tested and not a division by
    zero). 1.0 with a single category (nothing to test)."""
    from scipy.stats import chisquare

    counts = np.asarray(current_counts, dtype=np.float64)
    if len(counts) < 2 or counts.sum() == 0:
        return 1.0
    ref = np.where(np.asarray(reference_shares, dtype=np.float64) == 0, PSI_EPS, reference_shares)
    expected = ref / ref.sum() * counts.sum()
    return float(chisquare(counts, expected).pvalue)
