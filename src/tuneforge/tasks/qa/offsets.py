"""Lenient answer offsets: find where an answer really starts when its ``answer_start`` is a little off.

Public QA corpora are often exported by tools that count offsets in other units than Python's code points:
UTF-16 code units (JavaScript, Java, C#: a character outside the Basic Multilingual Plane, such as "𠮷", counts
twice, so every answer after it is shifted by one), UTF-8 bytes, or simply off by a few characters after an edit.
:func:`locate_answer` tries, in order: the offset as given, the offset read as UTF-16 units, read as UTF-8 bytes,
the nearest occurrence of the answer text within :data:`WINDOW` characters, and the answer's only occurrence in
the context. It never guesses between several far-away occurrences: such an answer cannot be located.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REASONS", "WINDOW", "Located", "locate_answer", "utf16_to_index"]

#: how far (in characters, either side) from the given start the answer text is searched for
WINDOW = 64

#: why an offset was changed, as said in the report
REASONS = {
    "utf16": "answer_start counted in UTF-16 code units (characters outside the Basic Multilingual Plane count "
             "twice); converted to character offsets",
    "utf8": "answer_start counted in UTF-8 bytes; converted to character offsets",
    "nearby": "answer_start off by a few characters; moved to the nearest occurrence of the answer text",
    "only": "answer_start did not point at the answer; moved to the answer text's only occurrence in the context",
}


@dataclass(frozen=True)
class Located:
    """Where an answer starts: ``start`` (None when it cannot be located) and why it moved (``reason``, a key of
    :data:`REASONS`; None when the given offset was right or the answer was not found)."""

    start: int | None
    reason: str | None = None
    detail: str = ""


def utf16_to_index(text: str, units: int) -> int | None:
    """The code-point index in ``text`` that ``units`` UTF-16 code units from its start point at (None when that
    falls inside a surrogate pair or past the end)."""
    count = 0
    for i, ch in enumerate(text):
        if count == units:
            return i
        if count > units:
            return None
        count += 2 if ord(ch) > 0xFFFF else 1
    return len(text) if count == units else None


def _utf8_to_index(text: str, nbytes: int) -> int | None:
    encoded = text.encode("utf-8")
    if nbytes > len(encoded):
        return None
    try:
        return len(encoded[:nbytes].decode("utf-8"))
    except UnicodeDecodeError:
        return None  # inside a multi-byte character


def _occurrences(haystack: str, needle: str) -> list[int]:
    out: list[int] = []
    i = haystack.find(needle)
    while i != -1:
        out.append(i)
        i = haystack.find(needle, i + 1)
    return out


def locate_answer(context: str, text: str, start: int, *, window: int = WINDOW) -> Located:
    """Where ``text`` starts in ``context`` given a possibly wrong ``start`` (see the module docstring)."""
    if context.startswith(text, start):
        return Located(start)
    if not text or text not in context:
        return Located(None)
    for reason, convert in (("utf16", utf16_to_index), ("utf8", _utf8_to_index)):
        i = convert(context, start)
        if i is not None and context.startswith(text, i):
            return Located(i, reason, f"{start} -> {i}")
    where = _occurrences(context, text)
    near = [o for o in where if abs(o - start) <= window]
    if near:
        best = min(near, key=lambda o: (abs(o - start), o))  # the nearest; on a tie the earlier one
        return Located(best, "nearby", f"{start} -> {best} ({best - start:+d})")
    if len(where) == 1:
        return Located(where[0], "only", f"{start} -> {where[0]}")
    return Located(None, None, f"{len(where)} occurrences, none within {window} characters of {start}")
