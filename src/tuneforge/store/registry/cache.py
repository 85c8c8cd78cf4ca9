"""What ``name@ref`` resolved to, per tenant, for a moment: the service's inference routes ask on every request,
and a change of the registry made through this process drops the name's entries at once (``invalidate``), so a
promotion or rollback is seen by the very next request. A change made by another process (another API replica,
a worker's retrain job) is seen within ``ttl_s``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["RefCache"]

T = TypeVar("T")


class RefCache:
    def __init__(self, ttl_s: float = 1.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], tuple[float, int, Any]] = {}
        self._generation: dict[tuple[str, str], int] = {}

    def get(self, tenant_id: str, name: str, ref: str, load: Callable[[], T]) -> T:
        """The cached value of ``(tenant, name, ref)``, or ``load()`` (not cached if the name changed while it
        ran, so a value read before a change is never kept after it)."""
        key = (tenant_id, name, ref)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            generation = self._generation.get((tenant_id, name), 0)
            if hit is not None and hit[0] > now and hit[1] == generation:
                return hit[2]  # type: ignore[no-any-return]
        value = load()
        with self._lock:
            if self._generation.get((tenant_id, name), 0) == generation:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (now + self.ttl_s, generation, value)
        return value

    def invalidate(self, tenant_id: str, name: str) -> None:
        with self._lock:
            self._generation[(tenant_id, name)] = self._generation.get((tenant_id, name), 0) + 1
            for key in [k for k in self._entries if k[0] == tenant_id and k[1] == name]:
                del self._entries[key]
