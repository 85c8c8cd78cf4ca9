"""The micro-batcher: concurrent requests to one model run through one call (one forward pass)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["MicroBatcher"]


class MicroBatcher:
    """Collects requests for up to ``max_wait_s`` (or ``max_items`` items), runs them as one call of ``fn`` in
    its own thread, and hands each request its share of the results. Requests that arrive while ``fn`` runs
    form the next batch, so under load batches grow by themselves."""

    def __init__(self, fn: Callable[[list[Any]], list[Any]], *, max_items: int = 64, max_wait_s: float = 0.002,
                 name: str = "batcher", on_batch: Callable[[int, int, float], None] | None = None) -> None:
        self.fn = fn
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self._q: queue.SimpleQueue[tuple[list[Any], Future[list[Any]]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"tuneforge-{name}", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, items: list[Any], timeout: float | None = None) -> list[Any]:
        if self._closed:
            raise RuntimeError("the model was unloaded; retry the request")
        fut: Future[list[Any]] = Future()
        self._q.put((items, fut))
        return fut.result(timeout=timeout)

    def close(self) -> None:
        self._closed = True
        self._q.put(None)

    def _loop(self) -> None:
        carry: tuple[list[Any], Future[list[Any]]] | None = None
        while True:
            first = carry or self._q.get()
            carry = None
            if first is None:
                return
            batch = [first]
            n = len(first[0])
            deadline = time.monotonic() + self.max_wait_s
            while n < self.max_items:
                remaining = deadline - time.monotonic()
                try:
                    nxt = self._q.get(timeout=remaining) if remaining > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)
                    break
                if n + len(nxt[0]) > self.max_items:
                    carry = nxt
                    break
                batch.append(nxt)
                n += len(nxt[0])
            self._run(batch, n)

    def _run(self, batch: list[tuple[list[Any], Future[list[Any]]]], n: int) -> None:
        items = [x for reqs, _ in batch for x in reqs]
        t0 = time.perf_counter()
        try:
            results = self.fn(items)
        except BaseException as e:  # noqa: BLE001 - delivered to every waiting request
            for _, fut in batch:
                fut.set_exception(e)
            return
        if self.on_batch:
            self.on_batch(n, len(batch), time.perf_counter() - t0)
        i = 0
        for reqs, fut in batch:
            fut.set_result(results[i: i + len(reqs)])
            i += len(reqs)
