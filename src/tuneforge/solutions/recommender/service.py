"""The recommender as a service: registered bundles, posted interactions, recommendations per tenant.

Tenant scoping happens only in the repositories below (subclasses of the store's ``TenantRepo``): another tenant's
recommender is reported exactly like a missing one. A bundle is registered from the tenant's import folder
(``<data_dir>/imports/<tenant id>``, where an operator or a deployment puts folders written by
``tuneforge solution recommender train``); it is copied into artifact storage, so the import can be removed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session as DbSession

from tuneforge.errors import InvalidRequestError, NotFoundError, TuneforgeError
from tuneforge.solutions.recommender.model import Recommendation, Recommender, SimilarItem
from tuneforge.store.ids import new_id
from tuneforge.store.repositories import TenantRepo
from tuneforge.store.solution_tables.recommender import Recommender as RecommenderRow
from tuneforge.store.solution_tables.recommender import RecommenderEvent
from tuneforge.utils.lru import LRUCache

__all__ = ["EventRepo", "RecommenderCache", "RecommenderRepo", "add_events", "delete_recommender", "import_root",
           "recommend", "register_recommender", "similar"]

#: most events of one user read back when recommending (the newest ones)
MAX_USER_EVENTS = 1000


class RecommenderRepo(TenantRepo[Any]):
    model = RecommenderRow
    noun = "recommender"
    param = "recommender_id"


class EventRepo(TenantRepo[Any]):
    """Interactions posted to a recommender after training."""

    model = RecommenderEvent
    noun = "event"
    param = "event_id"

    def of_user(self, recommender_id: str, user: str, limit: int = MAX_USER_EVENTS) -> list[RecommenderEvent]:
        q = (self.select().where(RecommenderEvent.recommender_id == recommender_id,
                                  RecommenderEvent.user_id == user)
             .order_by(RecommenderEvent.id.desc()).limit(limit))
        return list(reversed(list(self.session.scalars(q))))

    def count_for(self, recommender_id: str) -> int:
        q = self.select().where(RecommenderEvent.recommender_id == recommender_id).with_only_columns(
            func.count())
        return int(self.session.scalar(q) or 0)


class RecommenderCache(LRUCache[Recommender]):
    """Loaded bundles by recommender id (item embeddings and neighbours stay in memory), ``capacity`` of them,
    least recently used out."""

    def __init__(self, capacity: int = 4) -> None:
        super().__init__(capacity)


def import_root(data_dir: Path, tenant_id: str) -> Path:
    """The folder a tenant's bundles are registered from: ``<data_dir>/imports/<tenant id>``, one per tenant, so
    that no tenant can register a bundle put there for another."""
    return data_dir / "imports" / tenant_id


def _bundle_source(data_dir: Path, tenant_id: str, bundle: str) -> Path:
    shown = f"imports/{tenant_id}"  # relative to the data folder: never the server's absolute path
    if "\x00" in bundle:  # a file name cannot hold it (Path.resolve() raises ValueError on it)
        raise InvalidRequestError("bundle: the name holds a NUL character, which no folder name can contain.",
                                  param="bundle", hint=f"Give the name of a bundle folder in {shown}.")
    root = import_root(data_dir, tenant_id).resolve()
    path = (root / bundle).resolve()
    if not path.is_relative_to(root) or path == root:
        raise InvalidRequestError(f"bundle: '{bundle}' is not a folder inside the import folder.",
                                  param="bundle", hint=f"Give the name of a bundle folder in {shown}.")
    if not path.is_dir():
        raise NotFoundError(f"No bundle folder '{bundle}' in the import folder.", param="bundle",
                            hint=f"Copy the folder written by `tuneforge solution recommender train` into {shown} "
                                 "in the server's data folder first.")
    return path


def _load(db: DbSession, storage: Any, row: RecommenderRow, cache: RecommenderCache) -> Recommender:
    folder = storage.local_path(row.storage_key)
    db.rollback()  # end the read transaction before the (possibly slow) load
    return cache.get(row.id, lambda: Recommender.load(folder))


def register_recommender(db: DbSession, *, tenant_id: str, storage: Any, data_dir: Path, name: str,
                         bundle: str) -> RecommenderRow:
    """Check the bundle loads, copy it into artifact storage and record it."""
    source = _bundle_source(data_dir, tenant_id, bundle)
    try:
        model = Recommender.load(source)
    except TuneforgeError as e:
        # the bundle's name, never the server path it was read from
        message = e.message.replace(str(source), repr(bundle)).replace(str(data_dir.resolve()), "<data dir>")
        raise InvalidRequestError(f"bundle: {message}", param="bundle", hint=e.hint) from e
    rid = new_id("rec")
    key = f"solutions/recommender/{tenant_id}/{rid}"
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "bundle"
        shutil.copytree(source, copy)
        storage.put_dir(key, copy)
    summary = {"items": model.n_items, "users": len(model.users), "cold_items": model.info.get("cold_items"),
               "base_model": model.info.get("base_model"), "blend": asdict(model.blend),
               "validation": model.info.get("validation") or {}}
    row = RecommenderRepo(db, tenant_id).add(RecommenderRow(id=rid, name=name, storage_key=key, summary=summary))
    try:
        db.commit()
    except Exception:
        storage.delete(key)
        raise
    return row


def delete_recommender(db: DbSession, *, tenant_id: str, storage: Any, recommender_id: str,
                       cache: RecommenderCache) -> RecommenderRow:
    repo = RecommenderRepo(db, tenant_id)
    row: RecommenderRow = repo.get(recommender_id)
    repo.delete(row)
    db.commit()
    storage.delete(row.storage_key)
    cache.evict(row.id)
    return row


def add_events(db: DbSession, *, tenant_id: str, storage: Any, recommender_id: str,
               events: Sequence[tuple[str, str, float | None]], cache: RecommenderCache) -> int:
    """Record ``(user, item, rating)`` events; every item must be in the recommender's catalogue."""
    row = RecommenderRepo(db, tenant_id).get(recommender_id)
    model = _load(db, storage, row, cache)
    unknown = sorted({item for _, item, _ in events if item not in model.item_index})
    if unknown:
        raise InvalidRequestError(f"Unknown item id(s): {', '.join(unknown[:10])}", param="events",
                                  code="unknown_item", hint="Only items of the trained catalogue can be recorded.")
    repo = EventRepo(db, tenant_id)
    for user, item, rating in events:
        repo.add(RecommenderEvent(recommender_id=row.id, user_id=user, item_id=item, rating=rating))
    db.commit()
    return len(events)


def recommend(db: DbSession, *, tenant_id: str, storage: Any, recommender_id: str, user: str, k: int,
              cache: RecommenderCache) -> list[Recommendation]:
    """Top-k for ``user``: the training history plus the events posted since."""
    row = RecommenderRepo(db, tenant_id).get(recommender_id)
    extra = [(e.item_id, e.rating) for e in EventRepo(db, tenant_id).of_user(row.id, user)]
    return _load(db, storage, row, cache).recommend(user, k, extra_events=extra)


def similar(db: DbSession, *, tenant_id: str, storage: Any, recommender_id: str, item: str, k: int,
            cache: RecommenderCache) -> list[SimilarItem]:
    row = RecommenderRepo(db, tenant_id).get(recommender_id)
    return _load(db, storage, row, cache).similar(item, k)

