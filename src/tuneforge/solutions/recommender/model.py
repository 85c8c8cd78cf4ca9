"""The recommender: training, scoring and explanations.

Scoring has two stages:

1. **Retrieval** — the two-tower score (user vector · item vector, fine-tuned text encoder) and the item-kNN score
   each nominate their top ``candidates`` items.
2. **Re-ranking** — the nominated items are ranked by a linear blend of the standardised text, item-kNN and
   popularity scores. The blend's weights are tuned on a validation split of the training interactions (each
   user's latest liked item), on which neither the encoder nor the kNN was trained.

Users with no history get the most popular items; items with no interactions (cold start) are reached through
their text alone. A trained recommender is saved as a bundle folder (see
:mod:`tuneforge.solutions.recommender.bundle`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from tuneforge.errors import ConfigError, DataError, DataProblem, NotFoundError
from tuneforge.solutions.recommender.bundle import BUNDLE_FORMAT, Bundle, read_bundle, write_bundle
from tuneforge.solutions.recommender.collab import ItemKNN, popularity
from tuneforge.solutions.recommender.config import Blend, RecommenderConfig
from tuneforge.solutions.recommender.data import Interaction, Item, check_known_items
from tuneforge.solutions.recommender.encoder import TextTower
from tuneforge.solutions.recommender.metrics import rank_metrics, top_k

__all__ = ["BUNDLE_FORMAT", "Blend", "Recommendation", "Recommender", "RecommenderConfig", "SimilarItem",
           "train_recommender"]

MODES = ("hybrid", "text", "knn", "popularity")

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Because:
    item_id: str
    title: str
    similarity: float


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    title: str
    score: float
    because: list[Because]
    explanation: str


@dataclass(frozen=True)
class SimilarItem:
    item_id: str
    title: str
    score: float
    text_similarity: float
    knn_similarity: float


def _standardise(x: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    return np.where(std > 1e-12, (x - mean) / np.where(std > 1e-12, std, 1.0), 0.0).astype(np.float32)


def _csr(rows: Sequence[Sequence[int]], n_items: int) -> sp.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate([np.asarray(r, dtype=np.int32) for r in rows]) if rows else np.zeros(0, np.int32)
    m = sp.csr_matrix((np.ones(indices.size, dtype=np.float32), indices, indptr), shape=(len(rows), n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def user_vectors(seen: sp.csr_matrix, liked: sp.csr_matrix, embeddings: np.ndarray) -> np.ndarray:
    """The user tower: the normalised mean embedding of the liked items (of all seen items when none is liked)."""
    no_likes = (np.asarray(liked.sum(axis=1)).ravel() == 0).astype(np.float32)
    base = liked + sp.diags(no_likes) @ seen
    v = np.asarray(base @ embeddings, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.where(norms > 1e-12, v / np.where(norms > 1e-12, norms, 1.0), 0.0).astype(np.float32)


class Recommender:
    """A trained recommender: score users over the catalogue, recommend with explanations, find similar items."""

    def __init__(self, *, config: RecommenderConfig, items: list[Item], embeddings: np.ndarray, knn: ItemKNN,
                 popularity: np.ndarray, users: list[str], seen: sp.csr_matrix, liked: sp.csr_matrix,
                 blend: Blend, tower: TextTower | None = None, info: dict[str, Any] | None = None) -> None:
        self.config = config
        self.items = items
        self.item_index = {it.item_id: i for i, it in enumerate(items)}
        self.embeddings = embeddings
        self.knn = knn
        self.popularity = popularity
        self.users = users
        self.user_index = {u: i for i, u in enumerate(users)}
        self.seen = seen
        self.liked = liked
        self.blend = blend
        self.tower = tower
        self.info = dict(info or {})
        self._sim = knn.similarity_matrix(len(items))

    # --- scoring --------------------------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self.items)

    def score(self, seen: sp.csr_matrix, liked: sp.csr_matrix, *, mode: str = "hybrid",
              blend: Blend | None = None, exclude_seen: bool = True) -> np.ndarray:
        """Scores of every item for each row (a user's seen and liked items); ``-inf`` where excluded.

        ``mode``: ``hybrid`` (retrieval + re-ranking), ``text`` (two-tower only), ``knn`` or ``popularity``.
        Rows with no history fall back to popularity in every mode except ``text`` and ``knn``.
        """
        if mode not in MODES:
            raise ConfigError(f"mode: unknown mode {mode!r} (choose from {', '.join(MODES)})")
        n_rows = seen.shape[0]
        pop = np.broadcast_to(np.log1p(self.popularity), (n_rows, self.n_items))
        if mode == "popularity":
            out = np.array(pop, dtype=np.float32)
        elif mode == "text":
            out = user_vectors(seen, liked, self.embeddings) @ self.embeddings.T
        elif mode == "knn":
            out = np.asarray((seen @ self._sim).todense(), dtype=np.float32)
        else:
            out = self._hybrid(seen, liked, pop, blend or self.blend)
        if exclude_seen:
            out = np.asarray(out, dtype=np.float32).copy()
            rows, cols = seen.nonzero()
            out[rows, cols] = -np.inf
        return np.asarray(out, dtype=np.float32)

    def _components(self, seen: sp.csr_matrix, liked: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        text = user_vectors(seen, liked, self.embeddings) @ self.embeddings.T
        knn = np.asarray((seen @ self._sim).todense(), dtype=np.float32)
        return text.astype(np.float32), knn

    def _hybrid(self, seen: sp.csr_matrix, liked: sp.csr_matrix, pop: np.ndarray, blend: Blend,
                components: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        text, knn = components if components is not None else self._components(seen, liked)
        z_text = _standardise(text)
        # the text term never drops to 0: it is what orders items without interactions (cold start) among themselves
        score = max(blend.text, 1e-3) * z_text + blend.knn * _standardise(knn) + blend.popularity * _standardise(
            np.asarray(pop, dtype=np.float32))
        c = self.config.candidates
        if c < self.n_items:  # retrieval: only what a retriever nominated is re-ranked
            nominated = np.zeros(score.shape, dtype=bool)
            rows = np.arange(score.shape[0])[:, None]
            masked_text = text.copy()
            masked_knn = knn.copy()
            r, cidx = seen.nonzero()
            masked_text[r, cidx] = -np.inf
            masked_knn[r, cidx] = -np.inf
            nominated[rows, top_k(masked_text, c)] = True
            nominated[rows, top_k(masked_knn, c)] = True
            score = np.where(nominated, score, -1e6 + score * 1e-3)  # the rest stay ordered, below every nominee
        no_history = np.asarray(seen.sum(axis=1)).ravel() == 0
        if no_history.any():
            score[no_history] = np.asarray(pop, dtype=np.float32)[no_history]
        return score.astype(np.float32)

    def tune_blend(self, seen: sp.csr_matrix, liked: sp.csr_matrix, positives: list[np.ndarray],
                   k: int = 10) -> tuple[Blend, dict[str, float]]:
        """Grid-search the blend weights for NDCG@k on held-out positives; returns the best and its metrics."""
        comps = self._components(seen, liked)
        pop = np.broadcast_to(np.log1p(self.popularity), (seen.shape[0], self.n_items))
        rows, cols = seen.nonzero()
        best: tuple[float, Blend, dict[str, float]] | None = None
        for w_text in np.linspace(0.0, 1.0, 11):
            for w_pop in (0.0, 0.1, 0.25, 0.5):
                blend = Blend(round(float(w_text), 2), round(float(1.0 - w_text), 2), w_pop)
                s = self._hybrid(seen, liked, pop, blend, comps)
                s[rows, cols] = -np.inf
                m = rank_metrics(s, positives, k=k)
                key = m[f"NDCG@{k}"]
                if best is None or key > best[0] + 1e-9:
                    best = (key, blend, m)
        assert best is not None
        return best[1], best[2]

    # --- one user -------------------------------------------------------------------------------------------

    def _history(self, user: str, extra: Sequence[tuple[str, float | None]] = ()) -> tuple[np.ndarray, np.ndarray]:
        seen: set[int] = set()
        liked: set[int] = set()
        u = self.user_index.get(user)
        if u is not None:
            seen.update(self.seen.indices[self.seen.indptr[u]: self.seen.indptr[u + 1]].tolist())
            liked.update(self.liked.indices[self.liked.indptr[u]: self.liked.indptr[u + 1]].tolist())
        unknown = [item for item, _ in extra if item not in self.item_index]
        if unknown:
            raise NotFoundError(f"Unknown item(s) in the user's events: {', '.join(sorted(set(unknown))[:10])}",
                                param="item")
        for item, rating in extra:
            i = self.item_index[item]
            seen.add(i)
            if rating is None or rating >= self.config.positive_threshold:
                liked.add(i)
            else:
                liked.discard(i)
        return np.array(sorted(seen), dtype=np.int64), np.array(sorted(liked), dtype=np.int64)

    def recommend(self, user: str, k: int = 10, *, extra_events: Sequence[tuple[str, float | None]] = (),
                  mode: str = "hybrid") -> list[Recommendation]:
        """The top ``k`` unseen items for ``user`` (training history plus ``extra_events``), with explanations.

        An unknown user with no events gets the most popular items.
        """
        if k < 1:
            raise ConfigError(f"k: must be at least 1 (got {k})")
        seen_idx, liked_idx = self._history(user, extra_events)
        seen = _csr([seen_idx.tolist()], self.n_items)
        liked = _csr([liked_idx.tolist()], self.n_items)
        scores = self.score(seen, liked, mode=mode)[0]
        order = [i for i in top_k(scores[None, :], k)[0] if np.isfinite(scores[i])]
        basis = liked_idx if liked_idx.size else seen_idx
        out = []
        for i in order:
            because = self._because(int(i), basis)
            if because:
                text = "Because you liked " + " and ".join(b.title for b in because)
            else:
                text = "Popular with other users" if not seen_idx.size else "Close to your history"
            out.append(Recommendation(self.items[i].item_id, self.items[i].title, float(scores[i]), because, text))
        return out

    def _because(self, item: int, history: np.ndarray, n: int = 2) -> list[Because]:
        """The history items most like ``item``: text cosine, plus item-kNN similarity where both have one."""
        if history.size == 0:
            return []
        text = self.embeddings[history] @ self.embeddings[item]
        knn = np.asarray(self._sim[history][:, [item]].todense()).ravel()
        sim = text + knn
        top = np.argsort(-sim, kind="stable")[:n]
        keep = [j for r, j in enumerate(top) if r == 0 or sim[j] >= 0.8 * sim[top[0]]]
        return [Because(self.items[history[j]].item_id, self.items[history[j]].title, float(text[j])) for j in keep]

    def similar(self, item: str, k: int = 10) -> list[SimilarItem]:
        """Items most like ``item``: blend of text cosine and item-kNN similarity (text alone for cold items)."""
        if k < 1:
            raise ConfigError(f"k: must be at least 1 (got {k})")
        i = self.item_index.get(item)
        if i is None:
            raise NotFoundError(f"No such item: '{item}'", param="item")
        text = self.embeddings @ self.embeddings[i]
        knn = np.asarray(self._sim[i].todense()).ravel()
        w_text = self.blend.text if knn.any() else 1.0
        w_knn = self.blend.knn if knn.any() else 0.0
        score = w_text * _standardise(text[None, :])[0] + w_knn * _standardise(knn[None, :])[0]
        score[i] = -np.inf
        order = top_k(score[None, :], k)[0]
        return [SimilarItem(self.items[j].item_id, self.items[j].title, float(score[j]), float(text[j]),
                            float(knn[j])) for j in order if np.isfinite(score[j])]

    # --- evaluation -----------------------------------------------------------------------------------------

    def history_matrices(self, users: Sequence[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Seen and liked matrices (one row per user, empty rows for unknown users)."""
        rows_seen, rows_liked = [], []
        for u in users:
            s, li = self._history(u)
            rows_seen.append(s.tolist())
            rows_liked.append(li.tolist())
        return _csr(rows_seen, self.n_items), _csr(rows_liked, self.n_items)

    def evaluate(self, test: Sequence[Interaction], *, k: int = 10, modes: Sequence[str] = MODES,
                 pool: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
        """HR@k and NDCG@k per mode on test interactions (liked ones are the positives), ranking every unseen
        item — or only the items in ``pool`` (e.g. cold-start items)."""
        by_user: dict[str, list[int]] = {}
        for x in test:
            i = self.item_index.get(x.item)
            if i is None:
                continue
            if x.rating is None or x.rating >= self.config.positive_threshold:
                by_user.setdefault(x.user, []).append(i)
        pool_mask = None
        if pool is not None:
            pool_mask = np.zeros(self.n_items, dtype=bool)
            pool_mask[[self.item_index[p] for p in pool if p in self.item_index]] = True
            by_user = {u: [i for i in v if pool_mask[i]] for u, v in by_user.items()}
            by_user = {u: v for u, v in by_user.items() if v}
        users = sorted(by_user)
        seen, liked = self.history_matrices(users)
        positives = [np.array(by_user[u]) for u in users]
        results: dict[str, dict[str, float]] = {}
        for mode in modes:
            s = self.score(seen, liked, mode=mode)
            if pool_mask is not None:
                s[:, ~pool_mask] = -np.inf
            results[mode] = rank_metrics(s, positives, k=k)
        return results

    # --- bundle ---------------------------------------------------------------------------------------------

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the bundle folder atomically (a reader never sees half of it)."""
        return write_bundle(path, Bundle(
            config=self.config, items=self.items, embeddings=self.embeddings, knn=self.knn,
            popularity=self.popularity, users=self.users, seen=self.seen, liked=self.liked, blend=self.blend,
            tower=self.tower, info=self.info), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, *, with_encoder: bool = False) -> Recommender:
        """Load a bundle folder. The encoder is only needed to embed new text, so it is loaded on request."""
        b = read_bundle(path, with_encoder=with_encoder)
        return cls(config=b.config, items=b.items, embeddings=b.embeddings, knn=b.knn, popularity=b.popularity,
                   users=b.users, seen=b.seen, liked=b.liked, blend=b.blend, tower=b.tower, info=b.info)


@dataclass
class _Split:
    users: list[str]
    seen: sp.csr_matrix
    liked: sp.csr_matrix
    val_positives: list[np.ndarray] = field(default_factory=list)
    val_seen: sp.csr_matrix | None = None
    val_liked: sp.csr_matrix | None = None


def _split(interactions: Sequence[Interaction], item_index: dict[str, int], n_items: int,
           threshold: float, validation: bool, seed: int) -> _Split:
    users = sorted({x.user for x in interactions})
    uidx = {u: i for i, u in enumerate(users)}
    per_user: list[list[tuple[float, int, bool, int]]] = [[] for _ in users]
    for order, x in enumerate(interactions):
        like = x.rating is None or x.rating >= threshold
        per_user[uidx[x.user]].append((x.timestamp if x.timestamp is not None else float(order), order, like,
                                       item_index[x.item]))
    seen_rows = [[e[3] for e in events] for events in per_user]
    liked_rows = [[e[3] for e in events if e[2]] for events in per_user]
    split = _Split(users, _csr(seen_rows, n_items), _csr(liked_rows, n_items))
    if not validation:
        return split
    rng = np.random.default_rng(seed)
    v_seen, v_liked, v_pos = [], [], []
    for events in per_user:
        likes = sorted({e[3]: e for e in events if e[2]}.values())
        if len(likes) < 3:  # too few to spare one
            v_seen.append([e[3] for e in events])
            v_liked.append([e[3] for e in events if e[2]])
            v_pos.append(np.zeros(0, dtype=np.int64))
            continue
        latest = max(e[0] for e in likes)
        ties = [e for e in likes if e[0] == latest]
        held = ties[int(rng.integers(len(ties)))][3]
        v_seen.append([e[3] for e in events if e[3] != held])
        v_liked.append([e[3] for e in events if e[2] and e[3] != held])
        v_pos.append(np.array([held], dtype=np.int64))
    split.val_seen, split.val_liked, split.val_positives = _csr(v_seen, n_items), _csr(v_liked, n_items), v_pos
    return split


def train_recommender(interactions: Sequence[Interaction], items: Sequence[Item], config: RecommenderConfig, *,
                      cache_dir: Path | None = None, on_progress: Progress | None = None,
                      interactions_file: str = "interactions") -> Recommender:
    """Train a recommender: fine-tune the text tower, fit item-kNN and popularity, tune the re-ranking blend."""
    import torch

    from tuneforge.runs import resolve_base_model

    t0 = time.perf_counter()
    items = list(items)
    check_known_items(interactions, items, file=interactions_file)
    if not interactions:
        raise DataError([DataProblem(interactions_file, None, None, "no interactions")])
    torch.manual_seed(config.seed)
    item_index = {it.item_id: i for i, it in enumerate(items)}
    n = len(items)
    split = _split(interactions, item_index, n, config.positive_threshold, config.validation, config.seed)
    tuning = split.val_seen is not None and any(len(p) for p in split.val_positives)
    fit_liked = split.val_liked if tuning and split.val_liked is not None else split.liked

    base = resolve_base_model(config.base_model, cache_dir or Path.home() / ".cache" / "tuneforge")
    tower = TextTower(base.path, max_length=config.max_length)
    texts = [it.text for it in items]
    liked_lists = [fit_liked.indices[fit_liked.indptr[u]: fit_liked.indptr[u + 1]].astype(np.int64)
                   for u in range(fit_liked.shape[0])]
    stats = tower.fine_tune(texts, liked_lists, steps=config.steps, batch_size=config.batch_size,
                            history_size=config.history_size, lr=config.lr, temperature=config.temperature,
                            train_layers=config.train_layers, refresh_every=config.refresh_every, seed=config.seed,
                            on_step=(lambda s, loss: on_progress("fine-tune", s, config.steps)) if on_progress
                            else None)
    if on_progress:
        on_progress("embed", 0, n)
    embeddings = tower.embed(texts)
    if on_progress:
        on_progress("embed", n, n)

    blend, val_metrics = Blend(), dict[str, float]()
    if tuning and split.val_seen is not None and split.val_liked is not None:
        knn_val = ItemKNN.fit(split.val_seen, k=config.neighbors)
        probe = Recommender(config=config, items=items, embeddings=embeddings, knn=knn_val,
                            popularity=popularity(split.val_seen), users=split.users, seen=split.val_seen,
                            liked=split.val_liked, blend=blend)
        keep = [i for i, p in enumerate(split.val_positives) if len(p)]
        blend, val_metrics = probe.tune_blend(split.val_seen[keep], split.val_liked[keep],
                                              [split.val_positives[i] for i in keep])
    knn = ItemKNN.fit(split.seen, k=config.neighbors)
    def finite(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 4)

    info = {"base_model": base.name, "fine_tune": {"steps": stats.steps, "first_loss": finite(stats.first_loss),
                                                   "last_loss": finite(stats.last_loss),
                                                   "seconds": round(stats.seconds, 1)},
            "validation": val_metrics, "train_seconds": round(time.perf_counter() - t0, 1),
            "n_interactions": len(interactions),
            "cold_items": int((popularity(split.seen) == 0).sum())}
    return Recommender(config=config, items=items, embeddings=embeddings, knn=knn, popularity=popularity(split.seen),
                       users=split.users, seen=split.seen, liked=split.liked, blend=blend, tower=tower, info=info)
