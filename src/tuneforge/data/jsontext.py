"""JSON text as data: parsing with a bound on nesting depth and a record of repeated keys, and the line each
object starts on (a regex scan, since ``json`` keeps no positions)."""

from __future__ import annotations

import json
import re
from typing import Any

from tuneforge.errors import DataProblem

__all__ = ["MAX_JSON_DEPTH", "JsonReader", "TooDeep", "deep_offset", "duplicate_key_warning", "json_kind",
           "lines_of", "loads", "object_offsets", "too_deep_problem"]

#: the deepest nesting of arrays/objects read; a record is an object of strings, numbers and lists (SQuAD: 7)
MAX_JSON_DEPTH = 64


class TooDeep(Exception):
    pass


class _Pairs:
    """The ``object_pairs_hook`` of one decoder: builds each object and notes the keys it repeats."""

    def __init__(self) -> None:
        self.dupes: list[str] = []

    def __call__(self, items: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(items)
        if len(d) != len(items):
            seen: set[str] = set()
            for k, _ in items:
                if k in seen:
                    self.dupes.append(k)
                seen.add(k)
        return d


class JsonReader:
    """Decodes JSON texts one after the other (one decoder for a whole file: ``json.loads`` with a hook would
    build one per line), refusing nesting deeper than :data:`MAX_JSON_DEPTH` (``TooDeep``) instead of hitting
    Python's recursion limit. After each :meth:`loads`, ``dupes`` lists the keys repeated within one object."""

    def __init__(self) -> None:
        self._pairs = _Pairs()
        self._decoder = json.JSONDecoder(object_pairs_hook=self._pairs)

    @property
    def dupes(self) -> list[str]:
        return self._pairs.dupes

    def loads(self, text: str) -> Any:
        self._pairs.dupes = []
        try:
            value = self._decoder.decode(text)
        except RecursionError:
            raise TooDeep from None
        # The depth is at most the number of brackets: only a text with many of them needs the walk.
        if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _depth_exceeds(value, MAX_JSON_DEPTH):
            raise TooDeep
        return value


def loads(text: str, dupes: list[str]) -> Any:
    """One JSON text read by a :class:`JsonReader`; the keys it repeats are appended to ``dupes``."""
    reader = JsonReader()
    try:
        return reader.loads(text)
    finally:
        dupes.extend(reader.dupes)


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > limit:
            return True
        children = v.values() if isinstance(v, dict) else v
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def deep_offset(text: str) -> int | None:
    """Where the nesting first goes deeper than :data:`MAX_JSON_DEPTH` (to name the line)."""
    depth = 0
    for m in _JSON_TOKEN.finditer(text):
        c = m.group()[0]
        if c in "{[":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return m.start()
        elif c in "}]":
            depth -= 1
    return None


def too_deep_problem(file: str, line: int | None) -> DataProblem:
    where = f"line {line} nests" if line is not None else "the file nests"
    return DataProblem(file, line, None, f"{where} arrays/objects more than {MAX_JSON_DEPTH} levels deep",
                       hint="a record must be one JSON object whose values are strings, numbers or lists of them")


def duplicate_key_warning(file: str, line: int | None, key: str) -> DataProblem:
    where = f"line {line}" if line is not None else "an object"
    return DataProblem(file, line, key, f"{where} gives the key {key!r} more than once; the last value is used",
                       hint="remove the repeated key so that the record says what you mean")


def json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"



_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],]')


def object_offsets(text: str, target: tuple[str, ...]) -> list[int]:
    """Character offsets of the ``{`` of every object at key path ``target`` (``"[]"`` = an array item).

    A regex tokenizer over already-validated JSON: strings are matched whole (in C), so the Python loop runs
    once per structural token, not once per character.
    """
    stack: list[tuple[bool, tuple[str, ...]]] = []  # (is_object, key path)
    key = ""
    expect_key = False
    offsets: list[int] = []
    for m in _JSON_TOKEN.finditer(text):
        tok = m.group()
        c = tok[0]
        if c == '"':
            if expect_key:
                key = json.loads(tok) if "\\" in tok else tok[1:-1]
                expect_key = False
        elif c in "{[":
            if not stack:
                path: tuple[str, ...] = ()
            elif stack[-1][0]:
                path = (*stack[-1][1], key)
            else:
                path = (*stack[-1][1], "[]")
            if c == "{" and path == target:
                offsets.append(m.start())
            stack.append((c == "{", path))
            expect_key = c == "{"
        elif c in "}]":
            stack.pop()
            expect_key = False
        else:  # ","
            expect_key = bool(stack) and stack[-1][0]
    return offsets


def lines_of(text: str, offsets: list[int]) -> list[int | None]:
    lines: list[int | None] = []
    line, pos = 1, 0
    for off in offsets:
        line += text.count("\n", pos, off)
        pos = off
        lines.append(line)
    return lines
