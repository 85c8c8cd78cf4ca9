"""The rows of a generation data file, with every unreadable line reported, and OpenAI-coded problems.

:func:`read_generation_rows` reads a file with the generic reader (:func:`tuneforge.data.formats.read_rows`,
UTF-8 only, as OpenAI requires). That reader stops a JSON Lines file at its first undecodable line and gives no
rows when any line is broken; here such a file is read again line by line, so that each broken line is one
problem (``invalid_encoding``, ``invalid_json``, ``data_type``) and the lines that do read are still validated:
one run of ``data check`` lists everything to fix.

OpenAI's validator codes (``data_type``, ``missing_messages_list``, ...) start each :class:`CodedProblem`'s
message. OpenAI's validator loads the JSON before it checks anything, so it has no code for a line that is not
JSON or not UTF-8; ``invalid_json`` and ``invalid_encoding`` are TuneForge's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tuneforge.data.formats import Row, detect_format, read_rows
from tuneforge.data.jsontext import JsonReader, TooDeep, json_kind, too_deep_problem
from tuneforge.errors import DataError, DataProblem

__all__ = ["CodedProblem", "coded_problem", "read_generation_rows"]

_BOM = b"\xef\xbb\xbf"
_JSON_HINT = "each line must be one complete JSON object, e.g. {\"messages\": [...]}"


@dataclass(frozen=True)
class CodedProblem(DataProblem):
    """A :class:`DataProblem` carrying OpenAI's validator code (also written at the start of the message)."""

    code: str | None = None


def coded_problem(file: str, line: int | None, field: str | None, code: str, message: str,
                  hint: str | None = None) -> CodedProblem:
    """A problem whose message starts with ``code``, as OpenAI's validator words it."""
    return CodedProblem(file, line, field, f"{code}: {message}", hint, code=code)


def _line_by_line(path: Path, file: str) -> tuple[list[Row], list[DataProblem]]:
    """Every line of a JSON Lines file: the objects that read, and one problem per line that does not."""
    raw = path.read_bytes()
    rows: list[Row] = []
    problems: list[DataProblem] = []
    reader = JsonReader()
    for number, chunk in enumerate(raw.removeprefix(_BOM).split(b"\n"), start=1):
        chunk = chunk.removesuffix(b"\r")
        if not chunk.strip():
            continue
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(coded_problem(
                file, number, None, "invalid_encoding", f"line {number} is not valid UTF-8: byte "
                f"0x{chunk[e.start]:02x} at byte {e.start + 1} of the line cannot be decoded",
                hint="save the file as UTF-8 (OpenAI's fine-tuning files are UTF-8)"))
            continue
        try:
            value = reader.loads(text)
        except json.JSONDecodeError as e:
            problems.append(coded_problem(file, number, None, "invalid_json",
                                          f"line {number} is not valid JSON: {e.msg} (column {e.colno})",
                                          hint=_JSON_HINT))
            continue
        except TooDeep:
            problems.append(too_deep_problem(file, number))
            continue
        if not isinstance(value, dict):
            problems.append(coded_problem(file, number, None, "data_type",
                                          f"line {number} is a JSON {json_kind(value)}, not an object",
                                          hint=_JSON_HINT))
            continue
        rows.append(Row(number, value))
    return rows, problems


def read_generation_rows(path: str | os.PathLike[str],
                         file_format: str | None = None) -> tuple[list[Row], list[DataProblem]]:
    """The rows of ``path`` and the problems of the lines that could not be read (for JSON Lines; any other
    unreadable file raises the reader's :class:`DataError`). ``file_format`` is formats.read_rows' format (jsonl,
    json), from the extension when None."""
    file = str(path)
    try:
        return read_rows(path, format=file_format, detect_encoding=False)[1], []
    except DataError as e:
        line_level = bool(e.problems) and all(p.line is not None for p in e.problems)
        undecodable = any("not valid UTF-8" in p.message for p in e.problems)
        fmt = file_format
        if fmt is None:
            try:
                fmt = detect_format(path)
            except DataError:
                fmt = None
        if fmt != "jsonl" or not (line_level or undecodable):
            raise DataError(e.problems, hint=e.hint) from None
        rows, problems = _line_by_line(Path(path), file)
        if not problems:  # the reader refused the file for a reason a line-by-line reading does not see
            raise DataError(e.problems, hint=e.hint) from None
        return rows, problems
