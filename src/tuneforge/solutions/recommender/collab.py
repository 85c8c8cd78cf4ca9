"""Collaborative signals from the training interactions: popularity and item-kNN.

Item-kNN is the classic item-based collaborative filter: cosine similarity between the items' columns of the
binary user × item matrix, keeping each item's ``k`` nearest neighbours; a user's score for an item is the sum of
its similarities to the items in the user's history. Items without interactions (cold start) have no neighbours
and score 0 here: only text can place them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["ItemKNN", "popularity"]


def popularity(matrix: sp.csr_matrix) -> np.ndarray:
    """Interaction count per item (the columns of a users × items matrix)."""
    return np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32)


@dataclass
class ItemKNN:
    """Each item's ``k`` nearest neighbours by cosine over users: ``neighbors[i]`` (item indices, -1 = none) and
    ``sims[i]`` (their similarities, 0 where none)."""

    neighbors: np.ndarray  # (n_items, k) int32
    sims: np.ndarray  # (n_items, k) float32

    @classmethod
    def fit(cls, matrix: sp.csr_matrix, *, k: int = 100, shrink: float = 0.0) -> ItemKNN:
        """Fit on a users × items matrix (any positive value counts as an interaction)."""
        x = (matrix > 0).astype(np.float32).tocsc()
        n = x.shape[1]
        k = max(1, min(k, n - 1)) if n > 1 else 1
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        co = (x.T @ x).tocsr().astype(np.float32)  # items × items co-occurrence
        neighbors = np.full((n, k), -1, dtype=np.int32)
        sims = np.zeros((n, k), dtype=np.float32)
        for i in range(n):
            start, end = co.indptr[i], co.indptr[i + 1]
            idx = co.indices[start:end]
            val = co.data[start:end]
            keep = idx != i
            idx, val = idx[keep], val[keep]
            if idx.size == 0:
                continue
            s = val / (norms[i] * norms[idx] + shrink + 1e-9)
            top = np.argsort(-s, kind="stable")[:k]
            neighbors[i, : top.size] = idx[top]
            sims[i, : top.size] = s[top]
        return cls(neighbors, sims)

    def similarity_matrix(self, n_items: int) -> sp.csr_matrix:
        """The kept similarities as a sparse items × items matrix (row i: i's neighbours)."""
        rows = np.repeat(np.arange(self.neighbors.shape[0]), self.neighbors.shape[1])
        cols = self.neighbors.ravel()
        keep = cols >= 0
        return sp.csr_matrix((self.sims.ravel()[keep], (rows[keep], cols[keep])), shape=(n_items, n_items))

    def score(self, history: sp.csr_matrix) -> np.ndarray:
        """Scores of every item for each row of a users × items history matrix (binary)."""
        s = (history > 0).astype(np.float32) @ self.similarity_matrix(history.shape[1])
        return np.asarray(s.todense() if sp.issparse(s) else s, dtype=np.float32)
