"""Continuous batching for generation: one decode loop per loaded causal LM, in its own thread.

The loop holds the sequences being generated with their KV caches as one left-padded batch (a transformers
``DynamicCache`` whose rows are the sequences, plus an attention mask that hides each row's padding). Every turn of
the loop:

1. requests that arrived since the last step join, in the order they came, up to ``max_batch`` sequences and
   while their prompts fit in ``prefill_tokens`` (rows x the longest prompt; at least one request a step): they are
   prefilled together in one forward pass (left-padded, with an attention mask and position ids per row, as
   ``model.generate`` runs a batch of prompts), each row's first token is picked, and the rows that go on are merged
   into the batch's cache (the narrower of the two left-padded to the wider);
2. one decode step runs every sequence of the batch together (one token each, position ids per row);
3. each row's token goes through its reply decoder (:data:`tuneforge.tasks.generation.generate.ReplyDecoder`:
   the end-of-turn, stop-string and streaming rules of ``generate``), and rows that ended (end of turn, stop
   string, ``max_new_tokens``, cancelled, timed out) leave the batch; columns that only padding holds are cut.

So a request that arrives while others decode waits at most one step (more when many arrive at once: the budget
bounds how long the decoding rows pause for a prefill), and a finished one frees its row at once.
Greedy rows take the argmax; sampled rows go through transformers' own logits processors (repetition penalty,
temperature, top-k, top-p, in ``generate``'s order) and draw from a generator of their own (seeded by the request's
``seed``: the draws ``tuneforge predict --seed`` makes), so seeded requests need no global lock.

A model wrapped with peft LoRA adapters serves its base and every adapter from one copy: a step whose rows all use
one adapter runs with it set (``set_adapter``), a base-only step with the adapters disabled, a mixed step with
peft's per-row ``adapter_names``. Adapters are added and removed by :meth:`GenerationBatcher.call`, which runs a
function on the model in the loop's thread between two steps.

The waiting queue is bounded (a full one refuses with :class:`~tuneforge.errors.ServiceUnavailableError`), and
each request has a deadline: past it, it is failed with the same error, waiting or decoding. Nothing here knows
about HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from tuneforge.errors import ConfigError, ServiceUnavailableError
from tuneforge.inference.generation_request import GenerationRequest
from tuneforge.tasks.generation.generate import (
    FinishReason,
    Generation,
    GenerationOptions,
    ReplyDecoder,
    context_length,
)
from tuneforge.tasks.generation.template import end_of_turn_ids

__all__ = ["BASE_ADAPTER", "BatcherLimits", "GenerationBatcher", "GenerationRequest"]

log = logging.getLogger(__name__)

#: the name peft gives the base model (no adapter) in a mixed-adapter batch
BASE_ADAPTER = "__base__"


@dataclass(frozen=True)
class BatcherLimits:
    """How much one decode loop takes on."""

    #: sequences decoded together
    max_batch: int = 32
    #: requests waiting to join the batch; one more is refused (503)
    max_queue: int = 256
    #: seconds from submitting a request to its last token
    timeout_s: float = 600.0
    #: prompt tokens prefilled together between two decode steps, padding included (joining rows x their longest
    #: prompt); the requests that do not fit wait for the next step, so the batch keeps decoding
    prefill_tokens: int = 512


class _Seq:
    """A request being decoded: its reply decoder, how to pick its tokens, where it is."""

    def __init__(self, request: GenerationRequest, eos: set[int], limit: int | None) -> None:
        import torch

        self.request = request
        opts = request.options
        self.row = ReplyDecoder(request.tokenizer, eos, opts.stop, strip=request.strip,
                                on_text=request.put_text if request.stream else None)
        room = opts.max_new_tokens if limit is None else min(opts.max_new_tokens, limit - len(request.prompt_ids))
        self.max_new = room
        self.ids = list(request.prompt_ids)  # prompt and generated tokens (the repetition penalty reads them)
        self.length = len(self.ids)  # tokens in this row's cache once the pending token is fed
        self.next_token: int | None = None
        self.processors = _processors(opts)
        self.generator: torch.Generator | None = None
        if opts.sampling:
            self.generator = torch.Generator()
            if opts.seed is not None:
                self.generator.manual_seed(int(opts.seed))
            else:
                self.generator.seed()

    def pick(self, logits: Any, greedy: int) -> int:
        """The next token from this row's float32 logits [1, vocab] (``greedy``: their argmax, computed for the
        whole batch at once)."""
        import torch

        if self.processors is None:
            return greedy
        scores = self.processors(torch.tensor([self.ids], dtype=torch.long), logits)
        if self.generator is None:
            return int(torch.argmax(scores, dim=-1)[0])
        probs = torch.nn.functional.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, num_samples=1, generator=self.generator)[0, 0])

    def take(self, token: int) -> bool:
        """Feed the picked token to the reply; True when the reply has ended."""
        if self.request.first_token_at is None:
            self.request.first_token_at = time.monotonic()
        self.ids.append(token)
        self.next_token = token
        done = self.row.push(token)
        return done or self.row.generated >= self.max_new

    def finish(self, reason: FinishReason = "length") -> None:
        self.request.put_end(self.row.finish(len(self.request.prompt_ids), reason))

    def fail(self, error: BaseException) -> None:
        self.request.put_error(error, self.row.finish(len(self.request.prompt_ids), "length"))


def _processors(opts: GenerationOptions) -> Any:
    """transformers' logits processors for these options, in ``generate``'s order; None for plain greedy."""
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs: list[Any] = []
    if opts.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(float(opts.repetition_penalty)))
    if opts.sampling:
        if opts.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(float(opts.temperature)))
        if opts.top_k:
            procs.append(TopKLogitsWarper(top_k=int(opts.top_k), min_tokens_to_keep=1))
        if opts.top_p < 1.0:
            procs.append(TopPLogitsWarper(top_p=float(opts.top_p), min_tokens_to_keep=1))
    if not procs and not opts.sampling:
        return None
    return LogitsProcessorList(procs)


def _left_pad(t: Any, width: int, dim: int) -> Any:
    import torch

    short = width - t.shape[dim]
    if short <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = short
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class GenerationBatcher:
    """The decode loop of one causal LM (see the module). ``model`` is the model (or a peft model holding LoRA
    adapters); each request names its adapter (None: the base)."""

    def __init__(self, model: Any, *, limits: BatcherLimits | None = None, name: str = "generate",
                 on_step: Callable[[int, float], None] | None = None) -> None:
        self.model = model
        self.limits = limits or BatcherLimits()
        self.on_step = on_step
        self.config = model.config
        self.context = context_length(model)
        self._cv = threading.Condition()
        self._pending: deque[GenerationRequest] = deque()
        self._calls: deque[tuple[Callable[[Any], Any], Future[Any]]] = deque()
        self._closed = False
        self._seqs: list[_Seq] = []
        self._cache: Any = None
        self._mask: Any = None
        self._batchable = True  # False for caches that cannot be merged (sliding windows): one at a time
        #: decode steps run and the largest batch seen, prefill passes run and the most requests one of them
        #: prefilled (for metrics and tests)
        self.steps = 0
        self.widest = 0
        self.prefills = 0
        self.widest_prefill = 0
        self._thread = threading.Thread(target=self._run, name=f"tuneforge-gen-{name}", daemon=True)
        self._thread.start()

    # --- the callers' side ----------------------------------------------------------------------------------

    def submit(self, prompt_ids: Sequence[int], options: GenerationOptions | None = None, *, tokenizer: Any,
               strip: bool = True, adapter: str | None = None, stream: bool = True,
               loop: asyncio.AbstractEventLoop | None = None, timeout_s: float | None = None,
               on_done: Callable[[Generation], None] | None = None) -> GenerationRequest:
        """Queue one generation; it joins the batch at the next step (``stream``: hand out its text deltas as
        they settle; without, only the whole generation). Raises :class:`ConfigError` for an empty
        prompt or one that leaves no room for a reply, :class:`ServiceUnavailableError` when the queue is full
        or the model was unloaded."""
        prompt = list(prompt_ids)
        if not prompt:
            raise ConfigError("prompt: empty; there is nothing to continue")
        if self.context is not None and len(prompt) >= self.context:
            raise ConfigError(f"prompt: {len(prompt)} tokens leave no room for a reply in the model's context of "
                              f"{self.context} tokens")
        request = GenerationRequest(prompt, options or GenerationOptions(), tokenizer=tokenizer, strip=strip,
                                    adapter=adapter, stream=stream, loop=loop, on_done=on_done,
                                    timeout_s=self.limits.timeout_s if timeout_s is None else timeout_s)
        with self._cv:
            if self._closed:
                raise ServiceUnavailableError("The model was unloaded while the request arrived; retry it.",
                                              code="model_unloaded")
            if len(self._pending) >= self.limits.max_queue:
                raise ServiceUnavailableError(
                    f"The server is busy: {len(self._pending)} requests are waiting for this model already. Retry "
                    "in a moment.", retry_after=1.0)
            self._pending.append(request)
            self._cv.notify()
        return request

    def call(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(model)`` in the loop's thread between two steps and make its result the model (adding or
        removing adapters); returns it."""
        fut: Future[Any] = Future()
        with self._cv:
            if self._closed:
                raise ServiceUnavailableError("The model was unloaded; retry the request.", code="model_unloaded")
            self._calls.append((fn, fut))
            self._cv.notify()
        return fut.result()

    def adapters_in_use(self) -> set[str | None]:
        """Adapters of the sequences being decoded or waiting (None: the base)."""
        with self._cv:
            return {s.request.adapter for s in self._seqs} | {r.adapter for r in self._pending}

    @property
    def active(self) -> int:
        return len(self._seqs)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        """Stop the loop: waiting and running requests fail with a 503 the client may retry."""
        with self._cv:
            self._closed = True
            self._cv.notify()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # --- the loop -------------------------------------------------------------------------------------------

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self._cv:
                    while not (self._pending or self._calls or self._seqs or self._closed):
                        self._cv.wait()
                    if self._closed:
                        break
                    calls = list(self._calls)
                    self._calls.clear()
                    self._expire_pending()
                    joining = self._joining()
                for fn, fut in calls:
                    self._call(fn, fut)
                try:
                    if joining:
                        self._prefill(joining)
                    self._drop_ended()
                    if self._seqs:
                        self._step()
                except Exception as e:  # noqa: BLE001 - a failed forward fails its batch, not the loop
                    log.exception("generation step failed")
                    self._fail_all(e)
        self._shutdown()

    def _call(self, fn: Callable[[Any], Any], fut: Future[Any]) -> None:
        try:
            self.model = fn(self.model)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            fut.set_exception(e)
        else:
            fut.set_result(self.model)

    def _expire_pending(self) -> None:
        now = time.monotonic()
        for r in [r for r in self._pending if r.deadline <= now or r.cancelled]:
            self._pending.remove(r)
            if r.cancelled:
                r.put_unstarted()
            else:
                r.put_error(_timed_out(r))

    def _forward(self, adapters: list[str | None], **inputs: Any) -> Any:
        model = self.model
        if not hasattr(model, "peft_config"):
            return model(**inputs)
        names = set(adapters)
        if names == {None}:
            with model.disable_adapter():
                return model(**inputs)
        if len(names) == 1:
            [name] = names
            if model.active_adapter != name:
                model.set_adapter(name)
            return model(**inputs)
        return model(**inputs, adapter_names=[a or BASE_ADAPTER for a in adapters])

    def _joining(self) -> list[GenerationRequest]:
        """The waiting requests that join at this step (called holding the lock): the oldest first, while the batch
        has room and their padded prompts fit in ``prefill_tokens``; the oldest always, however long its prompt."""
        room = (self.limits.max_batch if self._batchable else 1) - len(self._seqs)
        joining: list[GenerationRequest] = []
        width = 0
        while self._pending and len(joining) < room:
            n = len(self._pending[0].prompt_ids)
            if joining and (len(joining) + 1) * max(width, n) > self.limits.prefill_tokens:
                break
            width = max(width, n)
            joining.append(self._pending.popleft())
        return joining

    def _prefill(self, requests: list[GenerationRequest]) -> None:
        """Prefill these requests in one forward pass, pick each one's first token and merge the rows that go on
        into the batch. When the pass fails, each request is tried again alone, so only the one at fault fails."""
        import torch
        from transformers.cache_utils import DynamicCache, DynamicLayer

        from tuneforge.tasks.generation.collate import left_pad, pad_token_id

        live: list[GenerationRequest] = []
        for request in requests:
            if request.cancelled:
                request.put_unstarted()
            elif time.monotonic() >= request.deadline:
                request.put_error(_timed_out(request))
            else:
                live.append(request)
        if not live:
            return
        generation_config = getattr(self.model, "generation_config", None)
        seqs = [_Seq(r, end_of_turn_ids(r.tokenizer, generation_config), self.context) for r in live]
        try:
            batch = left_pad([r.prompt_ids for r in live], pad_token_id(live[0].tokenizer))
            mask = batch["attention_mask"]
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # each row counts from its first real token
            cache = DynamicCache(config=self.config)
            out = self._forward([r.adapter for r in live], input_ids=batch["input_ids"], attention_mask=mask,
                                position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
            logits = out.logits[:, -1].to(dtype=torch.float32)
            greedy = torch.argmax(logits, dim=-1).tolist()
            tokens = [s.pick(logits[i: i + 1], int(greedy[i])) for i, s in enumerate(seqs)]
        except Exception as e:  # noqa: BLE001 - the requests of this pass fail, not the loop
            if len(live) == 1:
                live[0].put_error(e)
                return
            log.warning("prefilling %d requests together failed (%s); prefilling them one at a time", len(live), e)
            for i, request in enumerate(live):
                if not self._batchable and self._seqs:  # a cache that cannot be merged: the rest wait their turn
                    with self._cv:
                        self._pending.extendleft(reversed(live[i:]))
                    return
                self._prefill([request])
            return
        self.prefills += 1
        self.widest_prefill = max(self.widest_prefill, len(live))
        ended = [s.take(t) for s, t in zip(seqs, tokens, strict=True)]
        keep = [i for i, done in enumerate(ended) if not done]
        if keep:
            if len(keep) < len(seqs):
                mask = _keep_rows(cache, mask, keep)
            if not all(type(layer) is DynamicLayer for layer in cache.layers):
                self._batchable = False
            self._merge([seqs[i] for i in keep], cache, mask)
        for s, done in zip(seqs, ended, strict=True):
            if done:
                s.finish()

    def _merge(self, seqs: list[_Seq], cache: Any, mask: Any) -> None:
        """Add prefilled rows (their cache and attention mask) to the batch."""
        import torch

        if self._cache is None:
            self._seqs, self._cache, self._mask = list(seqs), cache, mask
            return
        width = max(self._mask.shape[1], mask.shape[1])
        for big, new in zip(self._cache.layers, cache.layers, strict=True):
            big.keys = torch.cat([_left_pad(big.keys, width, -2), _left_pad(new.keys, width, -2)], dim=0)
            big.values = torch.cat([_left_pad(big.values, width, -2), _left_pad(new.values, width, -2)], dim=0)
        self._mask = torch.cat([_left_pad(self._mask, width, 1), _left_pad(mask, width, 1)], dim=0)
        self._seqs.extend(seqs)

    def _step(self) -> None:
        import torch

        seqs = self._seqs
        t0 = time.perf_counter()
        ids = torch.tensor([[s.next_token] for s in seqs], dtype=torch.long)
        mask = torch.cat([self._mask, self._mask.new_ones((len(seqs), 1))], dim=1)
        positions = torch.tensor([[s.length] for s in seqs], dtype=torch.long)
        out = self._forward([s.request.adapter for s in seqs], input_ids=ids, attention_mask=mask,
                            position_ids=positions, cache=self._cache, use_cache=True, logits_to_keep=1)
        self._mask = mask
        logits = out.logits[:, -1].to(dtype=torch.float32)
        greedy = torch.argmax(logits, dim=-1).tolist()
        ended = []
        for i, s in enumerate(seqs):
            s.length += 1
            if s.take(s.pick(logits[i: i + 1], int(greedy[i]))):
                ended.append(i)
        self.steps += 1
        self.widest = max(self.widest, len(seqs))
        if self.on_step is not None:
            self.on_step(len(seqs), time.perf_counter() - t0)
        if ended:
            self._remove(set(ended))
        for i in ended:  # after the batch let them go, so a caller woken by its reply sees it gone
            seqs[i].finish()

    def _drop_ended(self) -> None:
        """Rows whose request was cancelled or ran past its deadline leave before the next step."""
        now = time.monotonic()
        gone = {i for i, s in enumerate(self._seqs) if s.request.cancelled or now >= s.request.deadline}
        if not gone:
            return
        leaving = [self._seqs[i] for i in sorted(gone)]
        self._remove(gone)
        for s in leaving:
            if s.request.cancelled:
                s.finish("cancelled")
            else:
                s.fail(_timed_out(s.request))

    def _remove(self, rows: set[int]) -> None:
        keep = [i for i in range(len(self._seqs)) if i not in rows]
        if not keep:
            self._seqs, self._cache, self._mask = [], None, None
            return
        self._mask = _keep_rows(self._cache, self._mask, keep)
        self._seqs = [self._seqs[i] for i in keep]

    def _fail_all(self, error: BaseException) -> None:
        for s in self._seqs:
            s.fail(error)
        self._seqs, self._cache, self._mask = [], None, None

    def _shutdown(self) -> None:
        error = ServiceUnavailableError("The model was unloaded while generating; retry the request.",
                                        code="model_unloaded")
        self._fail_all(error)
        with self._cv:
            pending, self._pending = list(self._pending), deque()
            calls, self._calls = list(self._calls), deque()
        for r in pending:
            r.put_error(error)
        for _, fut in calls:
            fut.set_exception(error)


def _keep_rows(cache: Any, mask: Any, keep: list[int]) -> Any:
    """Keep only rows ``keep`` of a left-padded batch: its cache in place, and cut the columns that only padding
    holds now; returns the rows' attention mask."""
    import torch

    index = torch.tensor(keep, dtype=torch.long)
    mask = mask.index_select(0, index)
    start = int(mask.any(dim=0).to(torch.int8).argmax())  # the first column some row still uses
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, index)[..., start:, :]
        layer.values = layer.values.index_select(0, index)[..., start:, :]
    return mask[:, start:]


def _timed_out(request: GenerationRequest) -> ServiceUnavailableError:
    took = time.monotonic() - request.submitted
    return ServiceUnavailableError(f"The generation did not finish within the server's time limit ({took:.0f} s); "
                                   "ask for fewer tokens or retry later.", code="timeout", retry_after=1.0)
