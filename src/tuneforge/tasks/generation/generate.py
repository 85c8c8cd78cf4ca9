"""Generating replies: the one decoding path that predict, evaluate, ``tuneforge chat`` and serving share.

Prompts arrive as token ids (from :func:`.template.render_prompt`, so every path sees the ids training saw) and
go through transformers' ``model.generate`` with its KV cache: greedy when ``temperature`` is 0, else sampling
with ``temperature``, ``top_p``, ``top_k`` and ``repetition_penalty`` (:class:`GenerationOptions`, validated when
created). :func:`generate` batches prompts (left-padded, sorted by length so a batch pads little) and returns one
:class:`Generation` per prompt: the text, its token ids, why it ended (``finish_reason`` ``"stop"`` for an
end-of-turn token or a stop string, ``"length"`` for ``max_new_tokens``) and the token counts (OpenAI's usage).

Every generated token of every row goes through a small per-row decoder (a transformers ``StoppingCriteria``,
called once per step) that ends the row at an end-of-turn id or at the first stop string and, when asked, hands
out the text as it grows (``on_text``). Streaming (:func:`stream`) is that same call run in a thread, so the
streamed deltas always add up to exactly the text :func:`generate` returns; a tail of the text that could be the
beginning of a stop string (or an unfinished UTF-8 character, or trailing whitespace) is held back until the next
token decides it, so a stop string never leaks, not even partly.

Both are safe to call from a server thread with a loaded model and tokenizer. Seeded sampling draws from torch's
global generator, so seeded calls take a lock for the length of the generation (and leave the caller's generator
state as it was); unseeded and greedy calls run concurrently.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from tuneforge.errors import ConfigError
from tuneforge.tasks.generation.collate import left_pad, pad_token_id
from tuneforge.tasks.generation.template import end_of_turn_ids

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "MAX_STOP_SEQUENCES",
    "FinishReason",
    "Generation",
    "GenerationOptions",
    "ReplyDecoder",
    "Stream",
    "context_length",
    "generate",
    "stream",
]

#: tokens generated per reply unless told otherwise
DEFAULT_MAX_NEW_TOKENS = 256
#: as many stop sequences as OpenAI's API takes
MAX_STOP_SEQUENCES = 4
#: ``stop``: an end-of-turn token or a stop string ended the reply; ``length``: ``max_new_tokens`` (or the model's
#: context) did; ``cancelled``: the caller stopped it (a closed stream)
FinishReason = Literal["stop", "length", "cancelled"]

_SEED_LOCK = threading.Lock()


@dataclass(frozen=True)
class GenerationOptions:
    """How to decode: greedy (``temperature`` 0, the default) or sampled, how long, where to stop.

    Validated when created: every bad field is reported at once in a :class:`ConfigError`.
    """

    #: the most tokens generated per reply
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    #: 0 decodes greedily (the most likely token each step); above 0 samples, higher is more random (at most 2)
    temperature: float = 0.0
    #: sampling: keep the smallest set of tokens whose probability adds up to top_p (1 keeps all)
    top_p: float = 1.0
    #: sampling: keep only the k most likely tokens (0 keeps all)
    top_k: int = 0
    #: above 1 makes tokens already in the prompt or the reply less likely (1 is off; greedy decoding too)
    repetition_penalty: float = 1.0
    #: sampling: the same seed (with the same prompts and options) gives the same replies
    seed: int | None = None
    #: up to 4 strings that end a reply; the reply stops before the first one and never contains it
    stop: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        stop = self.stop
        if isinstance(stop, str):
            stop = (stop,)
        if isinstance(stop, list | tuple):
            object.__setattr__(self, "stop", tuple(stop))
        problems = []
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            problems.append(f"max_new_tokens: must be a whole number of at least 1, not {self.max_new_tokens!r}")
        if not _is_number(self.temperature) or not 0.0 <= self.temperature <= 2.0:
            problems.append(f"temperature: must be between 0 and 2 (0 decodes greedily), not {self.temperature!r}")
        if not _is_number(self.top_p) or not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p: must be above 0 and at most 1 (1 keeps every token), not {self.top_p!r}")
        if not _is_int(self.top_k) or self.top_k < 0:
            problems.append(f"top_k: must be a whole number of at least 0 (0 keeps every token), not {self.top_k!r}")
        if not _is_number(self.repetition_penalty) or not 0.0 < self.repetition_penalty <= 10.0:
            problems.append("repetition_penalty: must be above 0 and at most 10 (1 is off), not "
                            f"{self.repetition_penalty!r}")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < 2**63):
            problems.append(f"seed: must be a whole number from 0 to 2**63 - 1, not {self.seed!r}")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) for s in self.stop):
            problems.append(f"stop: must be a string or a list of strings, not {self.stop!r}")
        elif len(self.stop) > MAX_STOP_SEQUENCES:
            problems.append(f"stop: at most {MAX_STOP_SEQUENCES} stop sequences, not {len(self.stop)}")
        elif any(not s for s in self.stop):
            problems.append("stop: a stop sequence must not be empty")
        if problems:
            raise ConfigError(problems, hint="see `tuneforge predict --help` for what each generation option does")

    @classmethod
    def of(cls, base: GenerationOptions | None = None, /, **values: Any) -> GenerationOptions:
        """Options from keyword values, where ``None`` means "not given" (the default, or ``base``'s value); an
        unknown name is a :class:`ConfigError` naming the known ones."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"{', '.join(unknown)}: not a generation option (known: {', '.join(known)})")
        given = {k: v for k, v in values.items() if v is not None}
        if base is None:
            return cls(**given)
        return cls(**{**{k: getattr(base, k) for k in known}, **given})

    @property
    def sampling(self) -> bool:
        """Whether tokens are sampled (``temperature`` above 0) rather than picked greedily."""
        return self.temperature > 0.0

    def generate_kwargs(self) -> dict[str, Any]:
        """The decoding arguments of ``model.generate`` (the model's own generation config fills nothing in that
        these options decide: top-k is off unless asked, one beam)."""
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.sampling, "num_beams": 1,
                              "repetition_penalty": float(self.repetition_penalty), "use_cache": True}
        if self.sampling:
            kw.update(temperature=float(self.temperature), top_p=float(self.top_p), top_k=int(self.top_k))
        return kw


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x == x  # not NaN


@dataclass
class Generation:
    """One generated reply and what it cost, in OpenAI's terms."""

    #: the reply (end-of-turn token and stop string excluded)
    text: str
    #: the generated token ids (the end-of-turn token excluded; up to the token that completed a stop string)
    token_ids: list[int]
    finish_reason: FinishReason
    #: tokens of the prompt
    prompt_tokens: int
    #: tokens generated (an end-of-turn token included)
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def usage(self) -> dict[str, int]:
        """``{"prompt_tokens", "completion_tokens", "total_tokens"}`` as OpenAI's API reports them."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


def context_length(model: Any) -> int | None:
    """The most tokens (prompt and reply) the model takes: its config's ``max_position_embeddings``."""
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 0 else None


# --- the per-row decoder --------------------------------------------------------------------------------------

class _Row:
    """The reply of one prompt as it grows, token by token: ends it at an end-of-turn id or a stop string and
    hands out the part of its text that can no longer change (``on_text``)."""

    def __init__(self, tokenizer: Any, eos: set[int], stop: tuple[str, ...], *, strip: bool,
                 on_text: Callable[[str], None] | None) -> None:
        self.tokenizer = tokenizer
        self.eos = eos
        self.stop = stop
        self.strip = strip
        self.on_text = on_text
        self.ids: list[int] = []
        self.generated = 0
        self.reason: FinishReason | None = None
        self.sent = ""  # the text handed out so far: always a prefix of the final text
        self._cut: int | None = None  # where a stop string starts in the visible text

    @property
    def done(self) -> bool:
        return self.reason is not None

    def _visible(self) -> str:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        return text.lstrip() if self.strip else text

    def push(self, token: int) -> bool:
        """Take the next generated token; True when the reply has ended."""
        if self.done:
            return True
        self.generated += 1
        if token in self.eos:
            self.reason = "stop"
            return True
        self.ids.append(token)
        if not self.stop and self.on_text is None:
            return False
        visible = self._visible()
        hits = [i for i in (visible.find(s) for s in self.stop) if i >= 0]
        if hits:
            self._cut = min(hits)
            self.reason = "stop"
            return True
        if self.on_text is not None:
            self._send(visible[: self._settled(visible)])
        return False

    def _settled(self, visible: str) -> int:
        """How much of ``visible`` the next tokens can no longer change: not an unfinished UTF-8 character, not a
        tail that may be the start of a stop string, not trailing whitespace (the reply's end is stripped)."""
        end = len(visible.rstrip("\ufffd"))
        for k in range(min(max((len(s) for s in self.stop), default=1) - 1, end), 0, -1):
            if any(s.startswith(visible[end - k: end]) for s in self.stop):
                end -= k
                break
        if self.strip:
            end = len(visible[:end].rstrip())
        return end

    def _send(self, text: str) -> None:
        if self.on_text is not None and len(text) > len(self.sent) and text.startswith(self.sent):
            delta, self.sent = text[len(self.sent):], text
            self.on_text(delta)

    def finish(self, prompt_tokens: int, reason: FinishReason = "length") -> Generation:
        """The finished reply (``reason`` when neither an end-of-turn token nor a stop string ended it)."""
        if self.reason is None:
            self.reason = reason
        text = self._visible()
        if self._cut is not None:
            text = text[: self._cut]
        if self.strip:
            text = text.rstrip()
        self._send(text)
        return Generation(text=text, token_ids=list(self.ids), finish_reason=self.reason,
                          prompt_tokens=prompt_tokens, completion_tokens=self.generated)


#: the per-row decoder, for decode loops of their own (the serving batcher): the same end-of-turn, stop-string and
#: streaming rules as :func:`generate`
ReplyDecoder = _Row


def _criteria(rows: list[_Row], width: int, cancel: threading.Event | None) -> Any:
    """A transformers ``StoppingCriteria`` feeding each step's new tokens to the rows; a row is done when it
    says so, every row when ``cancel`` is set."""
    import torch
    from transformers import StoppingCriteria

    class _FeedRows(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if input_ids.shape[1] <= width:  # nothing generated yet
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            tokens = input_ids[:, -1].tolist()
            done = [row.push(t) for row, t in zip(rows, tokens, strict=True)]
            if cancel is not None and cancel.is_set():
                done = [True] * len(rows)
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return _FeedRows()


# --- generate and stream --------------------------------------------------------------------------------------

def generate(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], options: GenerationOptions | None = None,
             *, batch_size: int = 8, bf16: bool = False, on_batch: Callable[[int], None] | None = None,
             on_text: Callable[[int, str], None] | None = None, strip: bool = True,
             cancel: threading.Event | None = None) -> list[Generation]:
    """Generate the reply to each prompt (token ids, e.g. from :func:`.template.render_prompt`), in input order.

    Batches of ``batch_size`` prompts, sorted by length and left-padded, go through ``model.generate`` with its
    KV cache; a row ends at an end-of-turn id (:func:`.template.end_of_turn_ids` of the tokenizer and the model's
    generation config), at the first of ``options.stop`` or after ``options.max_new_tokens`` tokens (fewer when
    the model's context would overflow). ``bf16`` runs under bf16 autocast; ``on_batch(n)`` is called after each
    batch of ``n`` prompts; ``on_text(i, delta)`` receives the text of prompt ``i`` as it grows (the deltas add
    up to its final text). ``strip`` trims whitespace around each reply (a chat reply; a raw text continuation
    keeps it). A set ``cancel`` event ends every row at the next token (``finish_reason`` ``"cancelled"``).
    """
    import numpy as np
    import torch

    from tuneforge.tasks.encoder import model_dtype_context

    opts = options or GenerationOptions()
    if not prompts:
        return []
    limit = context_length(model)
    for i, p in enumerate(prompts):
        if not p:
            raise ConfigError(f"prompt {i + 1} is empty: there is nothing to continue")
        if limit is not None and len(p) >= limit:
            raise ConfigError(f"prompt {i + 1} is {len(p)} tokens, which leaves no room for a reply in the model's "
                              f"context of {limit} tokens", hint="shorten the prompt or the conversation")
    model.eval()
    device = next(model.parameters()).device
    pad = pad_token_id(tokenizer)
    eos = end_of_turn_ids(tokenizer, getattr(model, "generation_config", None))
    kwargs = opts.generate_kwargs()
    results: list[Generation | None] = [None] * len(prompts)
    order = [int(i) for i in np.argsort([len(p) for p in prompts], kind="stable")]
    seeded = opts.sampling and opts.seed is not None
    with contextlib.ExitStack() as stack:
        if seeded:  # torch's global generator: held for the whole call, restored afterwards
            stack.enter_context(_SEED_LOCK)
            stack.enter_context(torch.random.fork_rng(devices=[]))
            torch.manual_seed(int(opts.seed or 0))
        stack.enter_context(torch.inference_mode())
        for b in range(0, len(order), batch_size):
            idx = order[b: b + batch_size]
            batch = {k: v.to(device) for k, v in left_pad([prompts[i] for i in idx], pad).items()}
            width = int(batch["input_ids"].shape[1])
            rows = [_Row(tokenizer, eos, opts.stop, strip=strip,
                         on_text=None if on_text is None else _bind(on_text, i)) for i in idx]
            new_tokens = opts.max_new_tokens if limit is None else min(opts.max_new_tokens, limit - width)
            with model_dtype_context(bf16):
                model.generate(**batch, **{**kwargs, "max_new_tokens": new_tokens},
                                     eos_token_id=sorted(eos) or None, pad_token_id=pad,
                                     stopping_criteria=[_criteria(rows, width, cancel)])
            cancelled = cancel is not None and cancel.is_set()
            for row, i in zip(rows, idx, strict=True):
                results[i] = row.finish(len(prompts[i]), "cancelled" if cancelled and not row.done else "length")
            if on_batch:
                on_batch(len(idx))
    return [r for r in results if r is not None]


def _bind(on_text: Callable[[int, str], None], i: int) -> Callable[[str], None]:
    return lambda delta: on_text(i, delta)


_END = object()


class Stream(Iterator[str]):
    """The text deltas of one reply as the model produces them (an iterator of strings); once it is exhausted,
    :attr:`generation` holds the whole :class:`Generation` (its text is the deltas joined, ``finish_reason``,
    token counts). :meth:`close` (or leaving a ``with`` block) stops the generation."""

    def __init__(self, run: Callable[[Callable[[int, str], None], threading.Event], list[Generation]]) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._cancel = threading.Event()
        self.generation: Generation | None = None
        self._error: BaseException | None = None
        self._finished = False

        def work() -> None:
            try:
                [gen] = run(lambda _i, delta: self._queue.put(delta), self._cancel)
                self._queue.put((_END, gen))
            except BaseException as e:  # handed to the reading thread, which raises it
                self._queue.put((_END, e))

        self._thread = threading.Thread(target=work, name="tuneforge-generate", daemon=True)
        self._thread.start()

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> str:
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, tuple) and item and item[0] is _END:
            self._finished = True
            self._thread.join()
            if isinstance(item[1], BaseException):
                raise item[1]
            self.generation = item[1]
            raise StopIteration
        return str(item)

    def close(self) -> None:
        """Stop generating (the reply ends at the next token) and wait for the generation thread."""
        self._cancel.set()
        self._thread.join()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def stream(model: Any, tokenizer: Any, prompt_ids: Sequence[int], options: GenerationOptions | None = None, *,
           bf16: bool = False, strip: bool = True) -> Stream:
    """Generate the reply to one prompt in a background thread and hand its text out as it grows: the same
    decoding as :func:`generate` (so the deltas join to exactly its text), with stop strings never leaking."""
    prompt = list(prompt_ids)

    def run(on_text: Callable[[int, str], None], cancel: threading.Event) -> list[Generation]:
        return generate(model, tokenizer, [prompt], options, batch_size=1, bf16=bf16, on_text=on_text, strip=strip,
                        cancel=cancel)

    return Stream(run)
