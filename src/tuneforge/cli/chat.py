"""``tuneforge chat``: talk to a generation model in the terminal, the reply streaming as it is produced.

Each turn renders the whole conversation (the ``--system`` message, every earlier turn, the new user message)
with :func:`tuneforge.tasks.generation.template.render_prompt`, the rendering training, ``predict`` and serving
use, and decodes it with :func:`tuneforge.tasks.generation.generate.stream`. When the conversation no longer fits
the model's context (less the reply's ``--max-new-tokens``), its oldest turns are left out of the prompt.

On a terminal the reply is a Rich live view; otherwise (a pipe, a file) it is written to stdout as plain text,
flushed at every delta, one reply per line block. ``/reset`` forgets the conversation, ``/exit`` (or end of
input) ends the session.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from tuneforge.cli.options import err, offline, out
from tuneforge.cli.predict import (
    MaxNewTokensOpt,
    RepetitionPenaltyOpt,
    SeedOpt,
    StopOpt,
    TemperatureOpt,
    TopKOpt,
    TopPOpt,
    generation_options,
    load_generator_or_run,
)
from tuneforge.errors import ConfigError

__all__ = ["ChatSession", "chat"]

EXIT, RESET = "/exit", "/reset"


class ChatSession:
    """A conversation with a model: the messages so far and how the next reply is decoded."""

    def __init__(self, model: Any, tokenizer: Any, options: Any, *, system: str | None = None,
                 bf16: bool = False) -> None:
        from tuneforge.tasks.generation.generate import context_length
        from tuneforge.tasks.generation.template import chat_template

        chat_template(tokenizer)  # a model without a chat template is refused before the first message
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.system = system
        self.bf16 = bf16
        self.history: list[dict[str, str]] = []
        limit = context_length(model)
        #: the most prompt tokens: the model's context less the room the reply may take
        self.prompt_budget = None if limit is None else max(1, limit - options.max_new_tokens)

    def reset(self) -> None:
        self.history.clear()

    def _messages(self, turns: list[dict[str, str]]) -> list[dict[str, str]]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + turns

    def prompt_ids(self, history: list[dict[str, str]] | None = None) -> tuple[list[int], int]:
        """The prompt of the next reply to ``history`` (default: the session's), and how many of its oldest
        messages were left out to fit the context."""
        from tuneforge.tasks.generation.template import render_prompt

        turns = list(self.history if history is None else history)
        dropped = 0
        ids = render_prompt(self.tokenizer, self._messages(turns))
        while self.prompt_budget is not None and len(ids) > self.prompt_budget and len(turns) > 1:
            # leave out the oldest exchange (a user message and the reply to it)
            cut = 2 if len(turns) > 2 and turns[1]["role"] == "assistant" else 1
            turns, dropped = turns[cut:], dropped + cut
            ids = render_prompt(self.tokenizer, self._messages(turns))
        if self.prompt_budget is not None and len(ids) > self.prompt_budget:
            raise ConfigError(f"message: the message is {len(ids)} tokens with the chat template, more than the "
                              f"{self.prompt_budget} the model's context leaves beside a reply of "
                              f"{self.options.max_new_tokens} tokens", hint="send a shorter message, or lower "
                                                                            "--max-new-tokens")
        return ids, dropped

    def send(self, text: str) -> Any:
        """The streamed reply to the user message ``text`` (a :class:`~tuneforge.tasks.generation.generate.Stream`);
        the exchange joins the history once the stream is read to its end (see :meth:`keep`)."""
        from tuneforge.tasks.generation.generate import stream

        turns = [*self.history, {"role": "user", "content": text}]
        ids, _ = self.prompt_ids(turns)
        self._pending = turns
        return stream(self.model, self.tokenizer, ids, self.options, bf16=self.bf16)

    def keep(self, reply: str) -> None:
        """Add the last exchange (its user message and ``reply``) to the history."""
        self.history = [*self._pending, {"role": "assistant", "content": reply}]


def _lines(tty: bool) -> Iterator[str]:
    """User messages: prompted on a terminal, one per line otherwise; ends at end of input."""
    if tty:
        while True:
            try:
                yield out.input("[bold cyan]you>[/] ")
            except EOFError:
                return
    else:
        for line in sys.stdin:
            yield line.rstrip("\r\n")


def _show(deltas: Iterable[str], tty: bool) -> str:
    """Print the reply as it streams; return it whole."""
    parts: list[str] = []
    if tty:
        from rich.live import Live
        from rich.text import Text

        with Live(Text(""), console=out, refresh_per_second=15, transient=False) as live:
            for d in deltas:
                parts.append(d)
                live.update(Text("".join(parts)))
        return "".join(parts)
    for d in deltas:
        parts.append(d)
        sys.stdout.write(d)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)


def chat(
    run: Annotated[Path, typer.Argument(help="A trained generation model folder (or a base chat model: smollm2 "
                                             "or its folder).")],
    system: Annotated[str | None, typer.Option(help="A system message that starts the conversation.")] = None,
    max_new_tokens: MaxNewTokensOpt = None, temperature: TemperatureOpt = None, top_p: TopPOpt = None,
    top_k: TopKOpt = None, repetition_penalty: RepetitionPenaltyOpt = None, seed: SeedOpt = None,
    stop: StopOpt = None,
) -> None:
    """Chat with a generation model: type a message, the reply streams back; the conversation is kept across
    turns. /reset starts over, /exit (or Ctrl-D) ends. Reads one message per line when stdin is not a terminal."""
    offline()
    predictor = load_generator_or_run(run)
    if not predictor.task.generative:
        raise ConfigError(f"run: {run} is a {predictor.task.name} model; chat needs a generation model",
                          hint="train one with `tuneforge train --task generation ...`, or use `tuneforge predict`")
    options = generation_options(max_new_tokens=max_new_tokens or predictor.task.max_new_tokens,
                                 temperature=temperature, top_p=top_p, top_k=top_k,
                                 repetition_penalty=repetition_penalty, seed=seed, stop=stop or None)
    session = ChatSession(predictor.model, predictor.tokenizer, options, system=system, bf16=predictor.bf16)
    tty = out.is_terminal and sys.stdin.isatty()
    if tty:
        err.print(f"[dim]Chatting with {run}. {RESET} starts over, {EXIT} ends.[/]")
    for line in _lines(tty):
        message = line.strip()
        if not message:
            continue
        if message == EXIT:
            break
        if message == RESET:
            session.reset()
            if tty:
                err.print("[dim]The conversation starts over.[/]")
            continue
        try:
            reply = session.send(message)
        except ConfigError as e:  # a message too long for the context: say so and keep chatting
            from rich.markup import escape

            err.print(f"[red]error:[/] {escape(e.problems[0])}", highlight=False)
            continue
        with reply:
            text = _show(reply, tty)
        gen = reply.generation
        session.keep(gen.text if gen is not None else text)
        if gen is not None and gen.finish_reason == "length" and tty:
            err.print("[dim](cut at --max-new-tokens)[/]")
