"""Readers and validation for generative fine-tuning data.

Six layouts are read, one JSON object per line (or a JSON array in a ``.json`` file), and normalized:

=====================  =============================================================  ==========
format                 a row                                                          kind
=====================  =============================================================  ==========
``chat``               OpenAI chat: ``{"messages": [{"role", "content", "weight"?}]}``  sft
``prompt_completion``  ``{"prompt": "...", "completion": "..."}``                      sft
``alpaca``             ``{"instruction", "input"?, "output", "system"?}``              sft
``sharegpt``           ``{"conversations": [{"from": "human"|"gpt"|..., "value"}]}``    sft
``openai_preference``  ``{"input": {"messages"}, "preferred_output", "non_preferred_output"}``  preference
``trl_preference``     ``{"prompt", "chosen", "rejected"}`` (strings or message lists)  preference
=====================  =============================================================  ==========

An SFT example becomes ``{"messages": [{"role", "content"} ...]}`` where assistant messages carry ``weight`` 1
(learned) or 0 (context only), as OpenAI defines it. A preference example becomes ``{"prompt": [messages],
"chosen": [assistant messages], "rejected": [assistant messages]}``.

OpenAI's rules apply and every problem names its line and field and starts with OpenAI's validator code
(``data_type``, ``missing_messages_list``, ``message_missing_key``, ``message_unrecognized_key``,
``unrecognized_role``, ``missing_content``, ``example_missing_assistant_message``), all problems in one
:class:`~tuneforge.errors.DataError`; a line that is not JSON or not UTF-8 is one problem of its own
(``invalid_json``, ``invalid_encoding``: see :mod:`.reading`) and the other lines are still checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuneforge.errors import DataError, DataProblem
from tuneforge.tasks.generation.reading import CodedProblem, coded_problem, read_generation_rows

__all__ = [
    "FORMATS",
    "MIN_EXAMPLES",
    "PREFERENCE_FORMATS",
    "ROLES",
    "SFT_FORMATS",
    "CodedProblem",
    "GenerationData",
    "detect_format",
    "normalize_row",
    "parse_prompt",
    "read_generation_data",
]

SFT_FORMATS = ("chat", "prompt_completion", "alpaca", "sharegpt")
PREFERENCE_FORMATS = ("openai_preference", "trl_preference")
FORMATS = SFT_FORMATS + PREFERENCE_FORMATS
ROLES = ("system", "user", "assistant")
#: OpenAI's minimum number of training examples
MIN_EXAMPLES = 10

_MESSAGE_KEYS = {"role", "content", "name", "weight"}
_TOOL_KEYS = ("tools", "functions", "tool_choice", "parallel_tool_calls")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                   "system": "system"}
_KIND_OF = {**dict.fromkeys(SFT_FORMATS, "sft"), **dict.fromkeys(PREFERENCE_FORMATS, "preference")}
_DESCRIBE = {
    "sft": "chat conversations for supervised fine-tuning (SFT: --method lora or --method full)",
    "preference": "preference pairs (preferred / non-preferred answers) for --method dpo",
}


_problem = coded_problem


@dataclass
class GenerationData:
    """The examples of one file, normalized; ``kind`` is ``"sft"`` or ``"preference"``."""

    file: str
    kind: str
    examples: list[dict[str, Any]]
    lines: list[int | None]
    formats: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.examples)


def detect_format(row: Mapping[str, Any]) -> str | None:
    """The format of one row from its keys (None when no known layout fits)."""
    if "messages" in row:
        return "chat"
    if "preferred_output" in row or "non_preferred_output" in row:
        return "openai_preference"
    if "chosen" in row or "rejected" in row:
        return "trl_preference"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row or "output" in row:
        return "alpaca"
    if "prompt" in row or "completion" in row:
        return "prompt_completion"
    return None


class _Checker:
    """Validates one row; collects problems for ``file``:``line``."""

    def __init__(self, file: str, line: int | None) -> None:
        self.file, self.line = file, line
        self.problems: list[DataProblem] = []

    def add(self, field: str | None, code: str, message: str, hint: str | None = None) -> None:
        self.problems.append(_problem(self.file, self.line, field, code, message, hint))

    def text(self, value: Any, field: str, *, code: str = "missing_content", optional: bool = False) -> str | None:
        """A string field: OpenAI text parts are joined; None (after recording a problem) when unusable."""
        if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value) and value:
            value = "".join(str(p.get("text", "")) for p in value)
        if value is None and optional:
            return ""
        if not isinstance(value, str):
            kind = "nothing (null or missing)" if value is None else f"a {type(value).__name__}"
            self.add(field, code, f"must be a string, found {kind}", hint="write the text as a JSON string")
            return None
        if not value.strip() and not optional:
            self.add(field, code, "is empty", hint="give it some text, or remove the example")
            return None
        return value

    def messages(self, value: Any, field: str, *, allow_assistant: bool = True,
                 allow_weight: bool = True) -> list[dict[str, Any]] | None:
        if not isinstance(value, list) or not value:
            found = "an empty list" if value == [] else ("missing" if value is None else f"a {type(value).__name__}")
            self.add(field, "missing_messages_list", f"must be a non-empty list of messages, found {found}",
                     hint='e.g. [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]')
            return None
        out: list[dict[str, Any]] = []
        ok = True
        for i, m in enumerate(value):
            msg = self.message(m, f"{field}[{i}]", allow_assistant=allow_assistant, allow_weight=allow_weight)
            ok = ok and msg is not None
            if msg is not None:
                out.append(msg)
        return out if ok else None

    def message(self, m: Any, field: str, *, allow_assistant: bool, allow_weight: bool) -> dict[str, Any] | None:
        if not isinstance(m, dict):
            self.add(field, "data_type", f"a message must be a JSON object, found a {type(m).__name__}")
            return None
        before = len(self.problems)
        for key in ("role", "content"):
            if key not in m:
                self.add(f"{field}.{key}", "message_missing_key", f'the message has no "{key}"',
                         hint='every message needs "role" and "content"')
        for key in m:
            if key in ("tool_calls", "function_call", "tool_call_id"):
                self.add(f"{field}.{key}", "message_unrecognized_key",
                         f'"{key}": tool and function calls are not supported yet',
                         hint="remove tool calls (and tool messages) from the conversation")
            elif key not in _MESSAGE_KEYS:
                self.add(f"{field}.{key}", "message_unrecognized_key", f'unrecognized key "{key}"',
                         hint=f"a message may only have {', '.join(sorted(_MESSAGE_KEYS))}")
        role = m.get("role")
        if "role" in m and role not in ROLES:
            if role in ("tool", "function"):
                msg = f'role "{role}": tool and function messages are not supported yet'
            else:
                msg = f"role {role!r} is not one of {', '.join(ROLES)}"
            self.add(f"{field}.role", "unrecognized_role", msg, hint=f"use one of: {', '.join(ROLES)}")
        elif role == "assistant" and not allow_assistant:
            self.add(f"{field}.role", "unrecognized_role", "an assistant message cannot appear here",
                     hint="the answers go in the output fields, not in the prompt")
        content = self.text(m.get("content"), f"{field}.content") if "content" in m else None
        weight = 1
        if "weight" in m:
            weight = m["weight"]
            if not allow_weight or role != "assistant":
                self.add(f"{field}.weight", "message_unrecognized_key",
                         '"weight" is only allowed on assistant messages of a chat example')
            elif isinstance(weight, bool) or weight not in (0, 1):
                self.add(f"{field}.weight", "invalid_weight", f"weight must be 0 or 1, found {weight!r}",
                         hint="1 trains on this assistant message, 0 keeps it as context only")
        if len(self.problems) > before or content is None:
            return None
        out: dict[str, Any] = {"role": role, "content": content}
        if isinstance(m.get("name"), str) and m["name"]:
            out["name"] = m["name"]
        if role == "assistant" and allow_weight:
            out["weight"] = int(weight)
        return out

    def reject_tools(self, row: Mapping[str, Any], prefix: str = "") -> None:
        for key in _TOOL_KEYS:
            if key in row:
                self.add(prefix + key, "unsupported_tools", f'"{key}": function and tool calling is not supported yet',
                         hint=f'remove "{key}" (and tool calls) from the example')

    def outputs(self, value: Any, field: str) -> list[dict[str, Any]] | None:
        """A preference side: a string, or a list of assistant messages (OpenAI wants exactly one)."""
        if isinstance(value, str) or value is None:
            text = self.text(value, field)
            return None if text is None else [{"role": "assistant", "content": text}]
        msgs = self.messages(value, field, allow_weight=False)
        if msgs is None:
            return None
        if any(m["role"] != "assistant" for m in msgs):
            self.add(field, "unrecognized_role", "must hold assistant messages only",
                     hint='e.g. [{"role": "assistant", "content": "..."}]')
            return None
        return msgs

    def prompt(self, value: Any, field: str) -> list[dict[str, Any]] | None:
        if isinstance(value, str) or value is None:
            text = self.text(value, field)
            return None if text is None else [{"role": "user", "content": text}]
        return self.messages(value, field, allow_weight=False)


def _chat(c: _Checker, row: Mapping[str, Any]) -> dict[str, Any] | None:
    c.reject_tools(row)
    msgs = c.messages(row.get("messages"), "messages")
    if msgs is None or c.problems:
        return None
    return {"messages": msgs}


def _prompt_completion(c: _Checker, row: Mapping[str, Any]) -> dict[str, Any] | None:
    prompt = c.prompt(row.get("prompt"), "prompt")
    completion = c.outputs(row.get("completion"), "completion")
    if prompt is None or completion is None:
        return None
    context = [{**m, "weight": 0} if m["role"] == "assistant" else m for m in prompt]  # TRL: learn the completion
    return {"messages": context + [{**m, "weight": 1} for m in completion]}


def _alpaca(c: _Checker, row: Mapping[str, Any]) -> dict[str, Any] | None:
    instruction = c.text(row.get("instruction"), "instruction")
    extra = c.text(row.get("input"), "input", optional=True)
    output = c.text(row.get("output"), "output")
    system = c.text(row.get("system"), "system", optional=True)
    history: list[dict[str, Any]] = []
    for i, pair in enumerate(row.get("history") or []):
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(x, str) and x.strip() for x in pair)):
            c.add(f"history[{i}]", "data_type", "each history item must be a [question, answer] pair of strings")
            continue
        history += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1], "weight": 1}]
    if instruction is None or extra is None or output is None or system is None or c.problems:
        return None
    user = instruction if not extra.strip() else f"{instruction}\n\n{extra}"
    head = [{"role": "system", "content": system}] if system.strip() else []
    return {"messages": head + history + [{"role": "user", "content": user},
                                          {"role": "assistant", "content": output, "weight": 1}]}


def _sharegpt(c: _Checker, row: Mapping[str, Any]) -> dict[str, Any] | None:
    c.reject_tools(row)
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        c.add("conversations", "missing_messages_list", "must be a non-empty list of {from, value} turns")
        return None
    msgs: list[dict[str, Any]] = []
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        msgs.append({"role": "system", "content": system})
    for i, t in enumerate(turns):
        field = f"conversations[{i}]"
        if not isinstance(t, dict):
            c.add(field, "data_type", f"a turn must be a JSON object, found a {type(t).__name__}")
            continue
        for key in ("from", "value"):
            if key not in t:
                c.add(f"{field}.{key}", "message_missing_key", f'the turn has no "{key}"')
        who = t.get("from")
        role = _SHAREGPT_ROLES.get(str(who).lower()) if isinstance(who, str) else None
        if "from" in t and role is None:
            note = " (tool and function turns are not supported yet)" if who in ("function_call", "observation",
                                                                               "tool", "function") else ""
            c.add(f"{field}.from", "unrecognized_role", f"{who!r} is not a known speaker{note}",
                  hint="use human / gpt (or user / assistant / system)")
        value = c.text(t.get("value"), f"{field}.value") if "value" in t else None
        if role is not None and value is not None:
            msgs.append({"role": role, "content": value, **({"weight": 1} if role == "assistant" else {})})
    return None if c.problems else {"messages": msgs}


def _openai_preference(c: _Checker, row: Mapping[str, Any]) -> dict[str, Any] | None:
    inp = row.get("input")
    if not isinstance(inp, dict):
        c.add("input", "data_type", 'must be an object {"messages": [...]}', hint="OpenAI's DPO format")
        prompt = None
    else:
        c.reject_tools(inp, "input.")
        prompt = c.messages(inp.get("messages"), "input.messages", allow_weight=False)
    sides: list[list[dict[str, Any]] | None] = []
    for key in ("preferred_output", "non_preferred_output"):
        value = row.get(key)
        if isinstance(value, list) and len(value) != 1:
            c.add(key, "data_type", f"must hold exactly one assistant message, found {len(value)}")
            sides.append(None)
        else:
            sides.append(c.outputs(value, key))
    if prompt is None or None in sides or c.problems:
        return None
    return {"prompt": prompt, "chosen": sides[0], "rejected": sides[1]}


def _trl_preference(c: _Checker, row: Mapping[str, Any]) -> dict[str, Any] | None:
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if "prompt" not in row and isinstance(chosen, list) and isinstance(rejected, list):
        # TRL's implicit prompt: two whole conversations; the prompt is what they share
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        prompt = c.messages(chosen[:n], "chosen", allow_weight=False) if n else None
        if not n:
            c.add("prompt", "missing_messages_list", "no prompt, and chosen and rejected share no first messages",
                  hint='add a "prompt" field')
        a, b = c.outputs(chosen[n:], "chosen"), c.outputs(rejected[n:], "rejected")
    else:
        prompt = c.prompt(row.get("prompt"), "prompt")
        a, b = c.outputs(chosen, "chosen"), c.outputs(rejected, "rejected")
    if prompt is None or a is None or b is None or c.problems:
        return None
    return {"prompt": prompt, "chosen": a, "rejected": b}


_PARSERS = {"chat": _chat, "prompt_completion": _prompt_completion, "alpaca": _alpaca, "sharegpt": _sharegpt,
            "openai_preference": _openai_preference, "trl_preference": _trl_preference}


def _learnable(c: _Checker, example: dict[str, Any]) -> bool:
    if "messages" not in example:
        return True
    if not any(m["role"] == "assistant" and m.get("weight", 1) == 1 for m in example["messages"]):
        has = any(m["role"] == "assistant" for m in example["messages"])
        c.add("messages", "example_missing_assistant_message",
              "every assistant message has weight 0, so there is nothing to learn" if has
              else "the conversation has no assistant message to learn from",
              hint='add the reply to learn as {"role": "assistant", "content": "..."} (with weight 1 or no weight)')
        return False
    return True


def normalize_row(row: Mapping[str, Any], *, file: str = "<input>", line: int | None = None,
                  format: str | None = None,
                  require_reply: bool = True) -> tuple[str, dict[str, Any]] | list[DataProblem]:
    """``(format, example)`` for one raw row, or the list of its problems (``require_reply`` False: a conversation
    without an assistant reply is a prompt to answer, as ``predict --data`` reads it)."""
    c = _Checker(file, line)
    if not isinstance(row, Mapping):
        c.add(None, "data_type", f"an example must be a JSON object, found a {type(row).__name__}")
        return c.problems
    fmt = format or detect_format(row)
    if fmt is None:
        keys = ", ".join(repr(k) for k in list(row)[:8]) or "none"
        c.add("messages", "missing_messages_list", f'no "messages" list (keys found: {keys})',
              hint="write OpenAI chat lines {\"messages\": [...]}, or prompt/completion, Alpaca "
                   "(instruction/input/output), ShareGPT (conversations) or preference pairs")
        return c.problems
    example = _PARSERS[fmt](c, row)
    if example is None or (require_reply and not _learnable(c, example)):
        return c.problems
    return fmt, example


def read_generation_data(path: str | os.PathLike[str], *, method: str | None = None,
                         min_examples: int = MIN_EXAMPLES, file_format: str | None = None,
                         require_reply: bool = True) -> GenerationData:
    """Read and validate a generation data file; :class:`DataError` lists every problem with line and field.

    ``method`` is ``"sft"`` (chat-like data wanted), ``"dpo"`` (preference pairs wanted) or None (either, e.g.
    for ``evaluate``); a file of the other kind is refused with a message saying which method fits it.
    ``min_examples`` is OpenAI's minimum (10) for training files; pass 0 for evaluation files. ``file_format`` is
    formats.read_rows' file format (jsonl, json), from the extension when None. ``require_reply`` False accepts
    conversations without an assistant reply (prompts to answer: prediction input).
    """
    file = str(path)
    rows, problems = read_generation_rows(path, file_format)  # problems: the lines that could not be read
    examples: list[dict[str, Any]] = []
    lines: list[int | None] = []
    formats: list[str] = []
    kind: str | None = None
    kind_line: int | None = None
    for row in rows:
        result = normalize_row(row.data, file=file, line=row.line, require_reply=require_reply)
        if isinstance(result, list):
            problems += result
            continue
        fmt, example = result
        k = _KIND_OF[fmt]
        if kind is None:
            kind, kind_line = k, row.line
        elif k != kind:
            problems.append(_problem(file, row.line, None, "mixed_formats",
                                     f"this line holds {_DESCRIBE[k].split(' (')[0]}, but line {kind_line} holds "
                                     f"{_DESCRIBE[kind].split(' (')[0]}", hint="keep one kind of example per file"))
            continue
        if fmt not in formats:
            formats.append(fmt)
        examples.append(example)
        lines.append(row.line)
    wanted = {"sft": "sft", "lora": "sft", "full": "sft", "qlora": "sft", "dpo": "preference"}.get(method or "")
    if kind is not None and wanted is not None and kind != wanted:
        fits = "--method dpo" if kind == "preference" else "supervised fine-tuning (--method lora or --method full)"
        raise DataError([_problem(file, None, None, "wrong_method",
                                  f"the file holds {_DESCRIBE[kind]}, but --method {method} needs "
                                  f"{_DESCRIBE[wanted]}", hint=f"train this file with {fits}")])
    if problems:
        raise DataError(sorted(problems, key=lambda p: p.line or 0))
    if len(examples) < min_examples:
        raise DataError([_problem(file, None, None, "insufficient_examples",
                                  f"the file has {len(examples)} example(s); fine-tuning needs at least {min_examples}",
                                  hint="add examples (OpenAI recommends 50 to 100 to see a clear improvement)")])
    return GenerationData(file, kind or "sft", examples, lines, tuple(formats))


def parse_prompt(item: Any, index: int = 0, *, system: str | None = None) -> list[dict[str, Any]] | DataProblem:
    """A raw prompt (CLI string, API ``messages`` list or ``{"messages"|"prompt": ...}``) as chat messages.

    For predict, chat and serving; the messages are rendered with :func:`~tuneforge.tasks.generation.template.
    render_prompt`. ``system`` is prepended when the messages have no system message.
    """
    c = _Checker("<input>", index + 1)
    msgs: list[dict[str, Any]] | None
    if isinstance(item, str):
        text = c.text(item, "prompt")
        msgs = None if text is None else [{"role": "user", "content": text}]
    elif isinstance(item, list):
        msgs = c.messages(item, "messages", allow_weight=False)
    elif isinstance(item, Mapping) and ("messages" in item or "input" in item):
        value = item["messages"] if "messages" in item else (item["input"] or {}).get("messages")
        c.reject_tools(item)
        msgs = c.messages(value, "messages", allow_weight=False)
    elif isinstance(item, Mapping) and "prompt" in item:
        msgs = c.prompt(item["prompt"], "prompt")
    else:
        c.add(None, "data_type", "a prompt must be a string, a list of messages or an object with \"messages\"")
        msgs = None
    if msgs is None or c.problems:
        first = c.problems[0]
        return DataProblem("<input>", None, first.field, f"item {index}: {first.message}", first.hint)
    if system and not any(m["role"] == "system" for m in msgs):
        msgs = [{"role": "system", "content": system}, *msgs]
    return msgs
