"""Top-k ranking metrics over full rankings: HR@k and NDCG@k with binary relevance.

For each user, ``scores`` ranks every candidate item (items excluded for that user — already seen in training,
or outside the evaluated pool — are set to ``-inf``). HR@k is 1 when at least one of the user's test positives is
in the top k; NDCG@k is DCG over the top k divided by the ideal DCG of ``min(#positives, k)`` hits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rank_metrics", "top_k"]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores of each row, best first (ties broken by lower index)."""
    k = min(k, scores.shape[1])
    # a stable sort, not argpartition: ties at the k-th place must not be broken at random
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def rank_metrics(scores: np.ndarray, positives: list[np.ndarray], *, k: int = 10) -> dict[str, float]:
    """Mean HR@k and NDCG@k over the rows that have at least one positive; ``users`` is how many rows counted."""
    top = top_k(scores, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    hr, ndcg = [], []
    for row, pos in enumerate(positives):
        if len(pos) == 0:
            continue
        ranked = top[row]
        valid = np.isfinite(scores[row, ranked])
        hits = np.isin(ranked, pos) & valid
        hr.append(float(hits.any()))
        ideal = discounts[: min(len(pos), k)].sum()
        ndcg.append(float((hits * discounts[: len(ranked)]).sum() / ideal))
    n = len(hr)
    return {f"HR@{k}": float(np.mean(hr)) if n else 0.0, f"NDCG@{k}": float(np.mean(ndcg)) if n else 0.0,
            "users": n}
