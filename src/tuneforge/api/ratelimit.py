"""Per-minute limits (requests, and tokens of chat and completions): a small interface, and an in-memory
implementation for one server process. A hit costs 1 (a request) or more (the tokens a generation may take); a
refund gives back what a hit took but did not use (the reply's unused ``max_tokens``).

Several API processes behind a load balancer would each count separately; a shared implementation (the
database or Redis) can replace :class:`MemoryRateLimiter` behind the same ``hit``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Decision", "MemoryRateLimiter", "RateLimiter"]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int, cost: int = 1) -> Decision: ...

    def refund(self, key: str, amount: int) -> None: ...


class MemoryRateLimiter:
    """A sliding window of one minute, approximated from the current and previous fixed windows (the
    Cloudflare/Redis-cell method): smooth at window edges, O(1) memory per key."""

    def __init__(self, window_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int, int]] = {}  # key -> (window index, count, previous count)

    def hit(self, key: str, limit: int, cost: int = 1) -> Decision:
        """Take ``cost`` from the key's window, or refuse (taking nothing) when it would pass ``limit``."""
        now = self.clock()
        idx = int(now // self.window)
        elapsed = now - idx * self.window
        with self._lock:
            w, count, prev = self._counts.get(key, (idx, 0, 0))
            if w != idx:
                prev = count if w == idx - 1 else 0
                count = 0
            weight = 1.0 - elapsed / self.window
            used = prev * weight + count
            if used + cost > limit:
                self._counts[key] = (idx, count, prev)
                # when enough of the previous window has slid out for this cost
                need = used + cost - limit
                wait = (need / prev * self.window) if prev else self.window - elapsed
                return Decision(False, limit, 0, max(0.001, min(wait, self.window - elapsed + self.window)))
            count += cost
            self._counts[key] = (idx, count, prev)
            remaining = max(0, math.floor(limit - (used + cost)))
            return Decision(True, limit, remaining, self.window - elapsed)

    def refund(self, key: str, amount: int) -> None:
        """Give back ``amount`` of what this window's hits took (never below nothing)."""
        if amount <= 0:
            return
        idx = int(self.clock() // self.window)
        with self._lock:
            w, count, prev = self._counts.get(key, (idx, 0, 0))
            if w == idx:
                self._counts[key] = (w, max(0, count - amount), prev)
