"""Generated answers: a chat model (the *writer*) answers a customer's message from numbered knowledge-base
passages and cites the ones it used (``[1]``, ``[2]``).

One prompt format serves training and answering: :func:`writer_messages` renders the passages and the message
the same way for the writer's training examples (:mod:`.writer_data`) and for every answer, and the writer
generates through the generation task's own path (:class:`PredictorWriter`: the run's chat template,
:func:`tuneforge.tasks.generation.generate.generate`; the API serves it from the chat models' continuous batcher
with the same rendering and decoding rules). :func:`parse_citations` reads the ``[n]`` markers back into
passages; a writer that finds nothing relevant in the passages answers :data:`NO_ANSWER`
(:func:`says_no_answer`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tuneforge import runs
from tuneforge.errors import ConfigError
from tuneforge.solutions.assistant.knowledge import Passage
from tuneforge.tasks.generation.generate import GenerationOptions

__all__ = [
    "NO_ANSWER",
    "WRITER_FOLDER",
    "WRITER_SYSTEM",
    "Citations",
    "PredictorWriter",
    "ServedWriter",
    "Writer",
    "check_writer",
    "cite",
    "load_writer",
    "parse_citations",
    "passage_block",
    "says_no_answer",
    "writer_messages",
]

#: the writer's reply when no passage answers the message (what its training examples teach it to say)
NO_ANSWER = "I could not find the answer to this in our help articles."
WRITER_SYSTEM = (
    "You are a customer-support assistant. Answer the customer's message using only the numbered "
    "passages. Cite each passage you use by its number in square brackets, like [1]. If no passage "
    f"answers the message, reply exactly: {NO_ANSWER}"
)
#: the bundle folder holding a writer run (a TuneForge generation run)
WRITER_FOLDER = "writer"

_CITATION = re.compile(r"\[\s*(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\s*\]")


class Writer(Protocol):
    """Writes one reply per conversation (lists of ``{"role", "content"}``), decoding with ``options``."""

    def write(self, conversations: Sequence[Sequence[dict[str, str]]], options: GenerationOptions) -> list[str]: ...


@dataclass
class PredictorWriter:
    """A writer over a loaded generation model (:func:`tuneforge.inference.load_predictor` of a run, or
    :func:`~tuneforge.inference.load_base_predictor` of a base chat model): the predict path of the task."""

    predictor: Any
    batch_size: int = 8

    @property
    def name(self) -> str:
        return str(self.predictor.manifest.get("name") or self.predictor.run_dir)

    def write(self, conversations: Sequence[Sequence[dict[str, str]]], options: GenerationOptions) -> list[str]:
        if not conversations:
            return []
        preds = self.predictor.predict_examples(
            [{"messages": list(c)} for c in conversations], batch_size=self.batch_size, generation=options
        )
        return [str(p["text"]) for p in preds]


@dataclass
class ServedWriter:
    """A writer over a served chat model (:meth:`tuneforge.inference.serving.InferenceService.chat_base` or
    ``chat_run``): its prompts join the continuous batches of the chat completions, rendered and decoded by the
    same rules. ``target`` is asked for the model on every call, so an unloaded model is loaded again."""

    target: Callable[[], Any]

    def write(self, conversations: Sequence[Sequence[dict[str, str]]], options: GenerationOptions) -> list[str]:
        if not conversations:
            return []
        target = self.target()
        requests = [target.submit(target.render(c), options, strip=True, stream=False) for c in conversations]
        return [r.result().text for r in requests]


def load_writer(spec: str | Path, *, settings: Any = None) -> PredictorWriter:
    """A writer from a generation run folder or a base chat model name (``smollm2``) or folder."""
    from tuneforge.inference import load_base_predictor, load_predictor

    path = Path(spec)
    if runs.has_manifest(path):
        predictor = load_predictor(path, settings=settings)
        if not getattr(predictor.task, "generative", False):
            raise ConfigError(
                f"writer: {path} is a {predictor.task.name} run; the writer must be a generation run "
                "or a base chat model",
                hint="train one with `tuneforge train --task generation` on the rows of "
                "`tuneforge solution assistant writer-data`",
            )
        return PredictorWriter(predictor)
    return PredictorWriter(load_base_predictor(str(spec), "generation", settings=settings))


def check_writer(spec: str | Path) -> None:
    """Refuse, before anything loads, a writer that is neither a generation run folder nor a base chat model."""
    from tuneforge.models.registry import BASE_MODELS

    path = Path(spec)
    if runs.has_manifest(path):
        task = runs.read_manifest(path, require_weights=False).get("task")
        if not _generative(task):
            raise ConfigError(
                f"writer: {path} is a {task} run; the writer must be a generation run",
                hint="train one with `tuneforge train --task generation` on the rows of "
                "`tuneforge solution assistant writer-data`",
            )
        return
    low = str(spec).lower()
    model = next((m for m in BASE_MODELS.values() if low == m.name or low in (a.lower() for a in m.aliases)), None)
    if model is not None and model.kind != "causal-lm":
        raise ConfigError(
            f"writer: {model.name} is an encoder; the writer must be a chat model (smollm2) or a generation run folder"
        )
    if model is None and not (path / "config.json").is_file():
        raise ConfigError(
            f"writer: '{spec}' is neither a generation run folder nor a base chat model",
            hint="give a folder written by `tuneforge train --task generation`, or smollm2",
        )


def _generative(task: Any) -> bool:
    from tuneforge.tasks import get_task, task_names

    return task in task_names() and bool(get_task(task).generative)


def _shorten(text: str, chars: int) -> str:
    text = text.strip()
    if len(text) <= chars:
        return text
    cut = text[:chars]
    if not text[chars].isspace():  # the cut is inside a word: end at the word before it
        space = cut.rfind(" ")
        cut = cut[:space] if space > chars // 2 else cut
    return cut.rstrip() + " …"


def passage_block(n: int, passage: Passage, *, chars: int) -> str:
    """Passage ``n`` as the writer reads it: its number, its title (the FAQ question or heading path) and its
    answer text, cut at ``chars`` characters."""
    body = _shorten(passage.answer or passage.text, chars)
    title = " ".join(passage.title.split())
    return f"[{n}] {title}\n{body}" if title else f"[{n}] {body}"


def writer_messages(question: str, passages: Sequence[Passage], *, chars: int = 400) -> list[dict[str, str]]:
    """The writer's prompt: the instructions as the system message, the numbered passages and the customer's
    message as the user message."""
    blocks = "\n\n".join(passage_block(i, p, chars=chars) for i, p in enumerate(passages, 1))
    return [
        {"role": "system", "content": WRITER_SYSTEM},
        {"role": "user", "content": f"Passages:\n\n{blocks}\n\nCustomer message: {question.strip()}"},
    ]


def cite(answer: str, numbers: Sequence[int]) -> str:
    """``answer`` with the citation markers of ``numbers`` at the end of its first sentence (training targets)."""
    marks = "".join(f"[{n}]" for n in numbers)
    text = answer.strip()
    m = re.search(r"[.!?](?=\s|$)", text.split("\n", 1)[0])
    if m is None:
        first, _, rest = text.partition("\n")
        return f"{first.rstrip()} {marks}" + (f"\n{rest}" if rest else "")
    return f"{text[: m.start()]} {marks}{text[m.start() :]}"


@dataclass
class Citations:
    """The passage numbers a reply cites, in order of first mention; numbers with no such passage apart."""

    numbers: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)


def parse_citations(text: str, n_passages: int) -> Citations:
    """The ``[n]`` (also ``[1, 2]``, ``[1][3]``) citations of ``text`` against passages numbered 1..n_passages."""
    out = Citations()
    for m in _CITATION.finditer(text):
        for part in re.split(r"[,;]", m.group(1)):
            n = int(part)
            target = out.numbers if 1 <= n <= n_passages else out.invalid
            if n not in target:
                target.append(n)
    return out


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower().replace("couldn't", "could not")).split())


def says_no_answer(text: str) -> bool:
    """Whether the writer's reply says that the passages do not answer the message."""
    return _norm(NO_ANSWER) in _norm(text)
