"""The usage ledger: trained tokens, predicted tokens, generated tokens (chat and completions: prompt and
completion tokens) and requests per tenant, model and UTC day.

Trained tokens are written in the same transaction that marks a job succeeded (exactly once). Requests and
predicted tokens, counted on the hot path, are summed in memory by :class:`UsageMeter` and flushed every few
seconds as one upsert per bucket; a crash loses at most that interval of request counts, never a training.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tuneforge.store.db import utcnow
from tuneforge.store.models import UsageRecord

__all__ = ["KINDS", "UsageMeter", "day_start", "month_start", "record_usage"]

KINDS = ("requests", "predicted_tokens", "embedded_tokens", "trained_tokens", "prompt_tokens", "completion_tokens")


def day_start(t: datetime | None = None) -> datetime:
    t = t or utcnow()
    return datetime(t.year, t.month, t.day, tzinfo=UTC)


def month_start(t: datetime | None = None) -> datetime:
    t = t or utcnow()
    return datetime(t.year, t.month, 1, tzinfo=UTC)


def record_usage(session: Session, *, tenant_id: str, model: str, kind: str, quantity: int,
                 at: datetime | None = None) -> None:
    """Add ``quantity`` to the ledger bucket (an upsert, safe under concurrency). The caller commits."""
    if quantity <= 0:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, UsageRecord.__table__)
    stmt = insert(table).values(tenant_id=tenant_id, model=model or "", kind=kind, period_start=day_start(at),
                                quantity=quantity)
    stmt = stmt.on_conflict_do_update(index_elements=["tenant_id", "model", "kind", "period_start"],
                                      set_={"quantity": table.c.quantity + stmt.excluded.quantity})
    session.execute(stmt)


class UsageMeter:
    """Counts usage in memory and writes it to the ledger in the background (and on ``flush``)."""

    def __init__(self, sessions: Callable[[], Session], *, interval: float = 2.0) -> None:
        self._sessions = sessions
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str, str, datetime], int] = defaultdict(int)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, tenant_id: str, kind: str, quantity: int = 1, *, model: str = "") -> None:
        if quantity > 0:
            with self._lock:
                self._pending[(tenant_id, model, kind, day_start())] += quantity

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, defaultdict(int)
        if not pending:
            return
        try:
            with self._sessions() as s:
                for (tenant_id, model, kind, day), qty in sorted(pending.items()):
                    record_usage(s, tenant_id=tenant_id, model=model, kind=kind, quantity=qty, at=day)
                s.commit()
        except Exception:
            with self._lock:  # keep the counts for the next flush
                for k, v in pending.items():
                    self._pending[k] += v
            raise

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self._interval):
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - the next flush retries; the API must keep serving
                    import logging

                    logging.getLogger(__name__).exception("usage flush failed; retrying")

        self._thread = threading.Thread(target=loop, name="tuneforge-usage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
