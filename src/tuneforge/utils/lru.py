"""One thread-safe least-recently-used cache for every service that keeps loaded things in memory.

Entries are weighed (by count: weight 1 each, or by bytes with ``weigh``); once the total passes ``capacity``
the least recently used entries are dropped (``on_evict`` is called for each, outside the lock), but never the
one just added: an entry larger than the whole capacity is still kept, alone. Loads of one key happen once,
however many threads ask for it at the same time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["LRUCache"]

V = TypeVar("V")


class LRUCache(Generic[V]):
    def __init__(self, capacity: float, *, weigh: Callable[[V], float] | None = None,
                 on_evict: Callable[[str, V], None] | None = None) -> None:
        self.capacity = capacity
        self._weigh = weigh or (lambda _v: 1)
        self._on_evict = on_evict
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, key: str, load: Callable[[], V]) -> V:
        """The cached value of ``key`` (now the most recently used), loading it with ``load`` when absent."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            try:
                value = load()
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self._items[key] = value
                evicted = self._over_capacity(keep=key)
            self._notify(evicted)
            return value

    def peek(self, key: str) -> V | None:
        with self._lock:
            return self._items.get(key)

    def _over_capacity(self, keep: str) -> list[tuple[str, V]]:
        evicted: list[tuple[str, V]] = []
        while len(self._items) > 1 and self._used() > self.capacity:
            old = next(k for k in self._items if k != keep)
            evicted.append((old, self._items.pop(old)))
        return evicted

    def _used(self) -> float:
        return sum(self._weigh(v) for v in self._items.values())

    def _notify(self, evicted: list[tuple[str, V]]) -> None:
        if self._on_evict is not None:
            for k, v in evicted:
                self._on_evict(k, v)

    def evict(self, key: str) -> None:
        self.evict_where(lambda k: k == key)

    def evict_where(self, match: Callable[[str], bool]) -> None:
        """Drop every entry whose key matches (e.g. all versions of one object: keys ``<id>:<version>``)."""
        with self._lock:
            evicted = [(k, self._items.pop(k)) for k in [k for k in self._items if match(k)]]
        self._notify(evicted)

    @property
    def used(self) -> float:
        with self._lock:
            return self._used()

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            evicted, self._items = list(self._items.items()), OrderedDict()
        self._notify(evicted)
