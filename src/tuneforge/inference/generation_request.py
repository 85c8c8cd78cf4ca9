"""One generation as its caller sees it while the decode loop (:mod:`.generation_batcher`) produces it: the text
deltas as they settle, then the whole :class:`~tuneforge.tasks.generation.generate.Generation` (or the error that
ended it), read from a thread or from a coroutine; and :meth:`GenerationRequest.cancel`, which stops it at the next
step. The ``put_*`` methods are the decode loop's side."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from tuneforge.tasks.generation.generate import Generation, GenerationOptions

__all__ = ["GenerationRequest"]

log = logging.getLogger(__name__)

_DELTA, _END, _ERROR = "delta", "end", "error"


class GenerationRequest:
    """One generation as the caller sees it: the text deltas as the model produces them, then the whole
    :class:`~tuneforge.tasks.generation.generate.Generation`.

    Read it from a thread (``for delta in request`` then :attr:`generation`, or :meth:`result`) or, when created
    with an event loop, from a coroutine (``async for delta in request``, :meth:`aresult`). :meth:`cancel` stops the
    generation at the next step (``finish_reason`` ``"cancelled"``)."""

    def __init__(self, prompt_ids: Sequence[int], options: GenerationOptions, *, tokenizer: Any, strip: bool,
                 adapter: str | None, timeout_s: float, stream: bool = True,
                 loop: asyncio.AbstractEventLoop | None = None,
                 on_done: Callable[[Generation], None] | None = None) -> None:
        self.prompt_ids = list(prompt_ids)
        self.options = options
        self.tokenizer = tokenizer
        self.strip = strip
        self.stream = stream
        self.adapter = adapter
        self.submitted = time.monotonic()
        self.deadline = self.submitted + timeout_s
        #: when the first token was produced (monotonic seconds), for time-to-first-token
        self.first_token_at: float | None = None
        self.generation: Generation | None = None
        #: called in the loop's thread with what was generated when the request ends, however it ends (metering)
        self.on_done = on_done
        self._cancelled = threading.Event()
        self._finished = False
        self._loop = loop
        self._sync: queue.SimpleQueue[tuple[str, Any]] | None = None if loop else queue.SimpleQueue()
        self._async: asyncio.Queue[tuple[str, Any]] | None = asyncio.Queue() if loop else None

    # --- the loop's side ------------------------------------------------------------------------------------

    def _put(self, item: tuple[str, Any]) -> None:
        if self._sync is not None:
            self._sync.put(item)
            return
        assert self._loop is not None and self._async is not None
        try:
            self._loop.call_soon_threadsafe(self._async.put_nowait, item)
        except RuntimeError:  # the caller's event loop is gone: nobody reads any more
            self._cancelled.set()

    def put_text(self, text: str) -> None:
        self._put((_DELTA, text))

    def _done(self, generation: Generation | None) -> None:
        if self.on_done is not None and generation is not None:
            try:
                self.on_done(generation)
            except Exception:  # noqa: BLE001 - a failed hook must not stop the decode loop
                log.exception("on_done of a generation failed")

    def put_end(self, generation: Generation) -> None:
        self._done(generation)
        self._put((_END, generation))

    def put_unstarted(self) -> None:
        """Cancelled before it joined the batch: nothing was computed (nor is counted)."""
        self._put((_END, Generation("", [], "cancelled", len(self.prompt_ids), 0)))

    def put_error(self, error: BaseException, partial: Generation | None = None) -> None:
        """End with ``error``; ``partial`` is what was generated before it (still counted by ``on_done``)."""
        self._done(partial)
        self._put((_ERROR, error))

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    # --- the caller's side ----------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop generating: the sequence leaves the batch at the next step."""
        self._cancelled.set()

    def _take(self, item: tuple[str, Any]) -> str | None:
        kind, value = item
        if kind == _DELTA:
            return str(value)
        self._finished = True
        if kind == _ERROR:
            raise value
        self.generation = value
        return None

    def __iter__(self) -> Iterator[str]:
        assert self._sync is not None, "created with an event loop: iterate it with async for"
        while not self._finished:
            delta = self._take(self._sync.get())
            if delta is not None:
                yield delta

    def result(self) -> Generation:
        """Wait for the whole generation (the deltas are dropped)."""
        for _ in self:
            pass
        assert self.generation is not None
        return self.generation

    async def __aiter__(self) -> AsyncIterator[str]:
        assert self._async is not None, "created without an event loop: iterate it in a thread"
        while not self._finished:
            delta = self._take(await self._async.get())
            if delta is not None:
                yield delta

    async def aresult(self) -> Generation:
        async for _ in self:
            pass
        assert self.generation is not None
        return self.generation
