"""The recommender bundle: the folder a trained recommender is saved as, written atomically::

    manifest.json         format, config, blend weights, validation metrics, counts
    encoder/              the fine-tuned encoder (safetensors) and its tokenizer
    items.jsonl           item_id, title, text (in index order)
    item_embeddings.npy   unit vectors, one row per item
    neighbors.npz         item-kNN: neighbour indices and similarities per item
    popularity.npy        training interactions per item
    history.npz           users' training histories (seen and liked item indices, CSR)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from tuneforge.errors import ModelFormatError, RunError
from tuneforge.solutions.recommender.collab import ItemKNN
from tuneforge.solutions.recommender.config import Blend, RecommenderConfig
from tuneforge.solutions.recommender.data import Item
from tuneforge.solutions.recommender.encoder import TextTower
from tuneforge.utils.fs import atomic_dir, atomic_write_json, storage_errors

__all__ = ["BUNDLE_FORMAT", "Bundle", "read_bundle", "write_bundle"]

BUNDLE_FORMAT = "tuneforge-recommender/1"


@dataclass(frozen=True)
class Bundle:
    """Everything a bundle folder holds (``tower`` is None when it was read without its encoder)."""

    config: RecommenderConfig
    items: list[Item]
    embeddings: np.ndarray
    knn: ItemKNN
    popularity: np.ndarray
    users: list[str]
    seen: sp.csr_matrix
    liked: sp.csr_matrix
    blend: Blend
    tower: TextTower | None = None
    info: dict[str, Any] = field(default_factory=dict)


def write_bundle(path: str | Path, bundle: Bundle, *, overwrite: bool = False) -> Path:
    """Write the bundle folder atomically (a reader never sees half of it)."""
    if bundle.tower is None:
        raise RunError("This recommender was loaded without its encoder, so it cannot be saved again.")
    p = Path(path)
    if p.exists() and not overwrite:
        raise RunError(f"{p} already exists.", hint="Choose another --output, or pass --overwrite.")
    with atomic_dir(p, overwrite=overwrite) as tmp:
        bundle.tower.save(tmp / "encoder")
        with storage_errors(tmp):
            (tmp / "items.jsonl").write_text("".join(
                json.dumps({"item_id": it.item_id, "title": it.title, "text": it.text, "genres": list(it.genres)},
                           ensure_ascii=False) + "\n" for it in bundle.items), encoding="utf-8")
            np.save(tmp / "item_embeddings.npy", bundle.embeddings)
            np.savez(tmp / "neighbors.npz", neighbors=bundle.knn.neighbors, sims=bundle.knn.sims)
            np.save(tmp / "popularity.npy", bundle.popularity)
            np.savez(tmp / "history.npz", users=np.array(bundle.users, dtype=object).astype(str),
                     seen_indptr=bundle.seen.indptr, seen_indices=bundle.seen.indices,
                     liked_indptr=bundle.liked.indptr, liked_indices=bundle.liked.indices)
        atomic_write_json(tmp / "manifest.json", {
            "format": BUNDLE_FORMAT, "config": asdict(bundle.config), "blend": asdict(bundle.blend),
            "n_items": len(bundle.items), "n_users": len(bundle.users), "dim": int(bundle.embeddings.shape[1]),
            **bundle.info})
    return p


def read_bundle(path: str | Path, *, with_encoder: bool = False) -> Bundle:
    """Read a bundle folder. The encoder is only needed to embed new text, so it is loaded on request."""
    p = Path(path)
    manifest_path = p / "manifest.json"
    if not manifest_path.is_file():
        raise RunError(f"{p} is not a recommender bundle (no manifest.json).",
                       hint="Point at the folder written by `tuneforge solution recommender train --output`.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") != BUNDLE_FORMAT:
            raise ModelFormatError(f"{manifest_path}: format {manifest.get('format')!r}, expected "
                                   f"{BUNDLE_FORMAT!r}.", hint="Train the bundle again with this version.")
        config = RecommenderConfig(**manifest["config"])
        items = [Item(r["item_id"], r["text"], r["title"], tuple(r.get("genres", ())))
                 for r in map(json.loads, (p / "items.jsonl").read_text(encoding="utf-8").splitlines())]
        embeddings = np.load(p / "item_embeddings.npy")
        nb = np.load(p / "neighbors.npz")
        hist = np.load(p / "history.npz")
        users = [str(u) for u in hist["users"]]
        n = len(items)
        seen = sp.csr_matrix((np.ones(hist["seen_indices"].size, np.float32), hist["seen_indices"],
                              hist["seen_indptr"]), shape=(len(users), n))
        liked = sp.csr_matrix((np.ones(hist["liked_indices"].size, np.float32), hist["liked_indices"],
                               hist["liked_indptr"]), shape=(len(users), n))
        pop = np.load(p / "popularity.npy")
        blend = Blend(**manifest["blend"])
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise ModelFormatError(f"{p}: the recommender bundle is incomplete or corrupt ({e}).",
                               hint="Train it again with `tuneforge solution recommender train`.") from e
    if embeddings.shape[0] != n or nb["neighbors"].shape[0] != n or pop.shape[0] != n:
        raise ModelFormatError(f"{p}: the bundle's files disagree on the number of items.",
                               hint="Train it again; do not mix files from different bundles.")
    tower = TextTower(p / "encoder", max_length=config.max_length) if with_encoder else None
    info = {k: v for k, v in manifest.items() if k not in ("format", "config", "blend")}
    return Bundle(config=config, items=items, embeddings=embeddings, knn=ItemKNN(nb["neighbors"], nb["sims"]),
                  popularity=pop, users=users, seen=seen, liked=liked, blend=blend, tower=tower, info=info)
