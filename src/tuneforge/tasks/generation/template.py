"""Render conversations with the tokenizer's own chat template: training examples and generation prompts.

One tokenization rule serves every path: the template renders text (``apply_chat_template(tokenize=False)``) and
the tokenizer encodes it without adding special tokens (the template writes them), exactly what
``apply_chat_template(tokenize=True)`` and ``transformers.pipeline`` do. Training (:func:`render_example`),
predict, chat and serving (:func:`render_prompt`) therefore see identical prompt token ids.

Which tokens are learned is found without knowing the template: for each assistant turn ``i`` with weight 1, the
template renders ``messages[:i]`` with the generation prompt and ``messages[:i + 1]`` without; the text between
the two is what the model must produce: the reply, its end-of-turn token and whatever the template writes after it
before the next turn (ChatML's newline). Tokens inside that text keep their ids as labels, every other token gets
-100. That span is exactly TRL's completion mask and LLaMA-Factory's response slot, so losses and token accuracies
compare with theirs; generation stops at the end-of-turn token, so the trailing newline is learned (at next to no
cost) but never produced. Templates that mark replies with ``{% generation %}`` use transformers' assistant mask
instead (the marked text only).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneforge.errors import ConfigError, DataProblem

__all__ = [
    "IGNORE_INDEX",
    "Rendered",
    "RenderedSet",
    "chat_template",
    "end_of_turn_ids",
    "length_problems",
    "render_dataset",
    "render_example",
    "render_pair",
    "render_prompt",
    "render_prompt_text",
]

IGNORE_INDEX = -100
_GENERATION_BLOCK = re.compile(r"\{%-?\s*generation\s*-?%\}")


@dataclass
class Rendered:
    """One tokenized example: ``labels[j]`` is ``input_ids[j]`` where the token is learned, else -100."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)

    def feature(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "labels": self.labels}


@dataclass
class RenderedSet:
    """Tokenized examples plus what ``data check`` and the run report: truncation and untrainable examples."""

    features: list[dict[str, list[int]]]
    truncated: int = 0  # examples longer than max_length (cut at max_length)
    untrainable: list[int] = field(default_factory=list)  # indexes of examples left with no learned token
    lengths: list[int] = field(default_factory=list)  # token counts before truncation

    @property
    def total_tokens(self) -> int:
        return sum(self.lengths)


def chat_template(tokenizer: Any) -> str:
    """The tokenizer's chat template; :class:`ConfigError` when it has none."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one
        template = template.get("default")
    if not isinstance(template, str) or not template.strip():
        raise ConfigError("base_model: the tokenizer has no chat template, so conversations cannot be rendered",
                          hint="use a chat (instruct) model such as smollm2, or add a chat_template to the "
                               "tokenizer_config.json of the base model folder")
    return template


def end_of_turn_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """Token ids that end an assistant turn: the tokenizer's eos plus the generation config's eos ids."""
    ids: set[int] = set()
    eos = getattr(tokenizer, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    gen_eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, Iterable):
        ids.update(i for i in gen_eos if isinstance(i, int))
    return ids


def _text(tokenizer: Any, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool) -> str:
    if not messages:
        return ""
    clean = [{k: v for k, v in m.items() if k != "weight"} for m in messages]
    try:
        return str(tokenizer.apply_chat_template(clean, tokenize=False, add_generation_prompt=add_generation_prompt,
                                                 chat_template=chat_template(tokenizer)))
    except ConfigError:
        raise
    except Exception as e:  # a template may raise (jinja's raise_exception) on conversations it refuses
        raise ConfigError(f"the chat template refused the conversation: {e}",
                          hint="check the roles and their order (some templates need user/assistant alternation)"
                          ) from None


def _encode(tokenizer: Any, text: str, *, offsets: bool = False) -> Any:
    return tokenizer(text, add_special_tokens=False, return_offsets_mapping=offsets)


def render_prompt_text(tokenizer: Any, messages: Sequence[dict[str, Any]]) -> str:
    """The prompt text for generating the next assistant reply (``add_generation_prompt=True``)."""
    return _text(tokenizer, messages, add_generation_prompt=True)


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, Any]]) -> list[int]:
    """Token ids of the prompt for the next assistant reply: what predict, chat and serving feed ``generate``."""
    return list(_encode(tokenizer, render_prompt_text(tokenizer, messages))["input_ids"])


def _trained(m: dict[str, Any]) -> bool:
    return m.get("role") == "assistant" and m.get("weight", 1) == 1


def _spans_by_diff(tokenizer: Any, messages: Sequence[dict[str, Any]], full: str) -> list[tuple[int, int]]:
    spans = []
    for i, m in enumerate(messages):
        if not _trained(m):
            continue
        before = render_prompt_text(tokenizer, messages[:i])
        upto = _text(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not (upto.startswith(before) and full.startswith(upto)):
            raise ConfigError(
                "the chat template renders a conversation differently from its beginning (it is not prefix-stable), "
                "so the assistant replies cannot be located",
                hint="use a template that marks replies with {% generation %} ... {% endgeneration %}")
        spans.append((len(before), len(upto)))
    return spans


def _labels_by_diff(tokenizer: Any, messages: Sequence[dict[str, Any]], eot: set[int]) -> tuple[list[int], list[int]]:
    full = _text(tokenizer, messages, add_generation_prompt=False)
    enc = _encode(tokenizer, full, offsets=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    labels = [IGNORE_INDEX] * len(ids)
    for start, end in _spans_by_diff(tokenizer, messages, full):
        inside = [j for j, (s, e) in enumerate(offsets) if s >= start and e <= end and e > s]
        _learn(ids, labels, inside, eot)
    return ids, labels


def _labels_by_mask(tokenizer: Any, messages: Sequence[dict[str, Any]], eot: set[int]) -> tuple[list[int], list[int]]:
    clean = [{k: v for k, v in m.items() if k != "weight"} for m in messages]
    out = tokenizer.apply_chat_template(clean, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                        chat_template=chat_template(tokenizer))
    ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    runs: list[list[int]] = []
    for j, flag in enumerate(mask):
        if flag and (not runs or runs[-1][-1] != j - 1):
            runs.append([])
        if flag:
            runs[-1].append(j)
    weights = [m for m in messages if m.get("role") == "assistant"]
    labels = [IGNORE_INDEX] * len(ids)
    for run, m in zip(runs, weights, strict=False):
        if _trained(m):
            _learn(ids, labels, run, eot)
    return ids, labels


def _learn(ids: list[int], labels: list[int], positions: list[int], eot: set[int]) -> None:
    # the whole reply span: the reply, its end-of-turn token and the template's text after it (see the module)
    for j in positions:
        labels[j] = ids[j]


def render_example(tokenizer: Any, messages: Sequence[dict[str, Any]], *, max_length: int | None = None,
                   eot_ids: set[int] | None = None) -> Rendered:
    """Token ids and labels of one conversation: assistant turns with weight 1 (with their end-of-turn token and
    the template's text up to the next turn) are learned, everything else (system, user, ``weight: 0`` turns,
    template markup) is -100.

    ``max_length`` cuts longer examples (``truncated`` is then True). ``eot_ids`` defaults to
    :func:`end_of_turn_ids` of the tokenizer.
    """
    eot = end_of_turn_ids(tokenizer) if eot_ids is None else eot_ids
    if _GENERATION_BLOCK.search(chat_template(tokenizer)):
        ids, labels = _labels_by_mask(tokenizer, messages, eot)
    else:
        ids, labels = _labels_by_diff(tokenizer, messages, eot)
    truncated = max_length is not None and len(ids) > max_length
    if truncated:
        ids, labels = ids[:max_length], labels[:max_length]
    return Rendered(ids, labels, truncated)


def render_pair(tokenizer: Any, example: dict[str, Any], *, max_length: int | None = None,
                eot_ids: set[int] | None = None) -> tuple[Rendered, Rendered]:
    """A preference example (prompt, chosen, rejected) as two rendered conversations that share the prompt."""
    prompt = [{k: v for k, v in m.items() if k != "weight"} for m in example["prompt"]]
    context = [{**m, "weight": 0} if m["role"] == "assistant" else m for m in prompt]

    def side(key: str) -> Rendered:
        return render_example(tokenizer, context + [{**m, "weight": 1} for m in example[key]],
                              max_length=max_length, eot_ids=eot_ids)

    return side("chosen"), side("rejected")


def render_dataset(tokenizer: Any, examples: Sequence[dict[str, Any]], *, max_length: int | None = None,
                   eot_ids: set[int] | None = None) -> RenderedSet:
    """Render SFT examples (``{"messages": [...]}``) into features for the collators."""
    eot = end_of_turn_ids(tokenizer) if eot_ids is None else eot_ids
    out = RenderedSet(features=[])
    for i, ex in enumerate(examples):
        r = render_example(tokenizer, ex["messages"], eot_ids=eot)
        out.lengths.append(len(r.input_ids))
        if max_length is not None and len(r.input_ids) > max_length:
            r = Rendered(r.input_ids[:max_length], r.labels[:max_length], True)
            out.truncated += 1
        if r.n_trained == 0:
            out.untrainable.append(i)
        out.features.append(r.feature())
    return out


def length_problems(lengths: Sequence[int], lines: Sequence[int | None], limit: int, *, file: str,
                    what: str = "the model's context") -> list[DataProblem]:
    """One problem per example longer than ``limit`` tokens (e.g. the model's ``max_position_embeddings``)."""
    return [DataProblem(file, line, "messages", f"context_length_exceeded: the conversation is {n} tokens, longer "
                        f"than {what} ({limit} tokens)", hint="shorten or split the conversation")
            for n, line in zip(lengths, lines, strict=True) if n > limit]
