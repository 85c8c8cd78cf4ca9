"""Readers that turn a data file into rows, remembering the line each record starts on.

Every reader collects all the problems it finds and raises one :class:`~tuneforge.errors.DataError`, so a user
fixes a file in one pass instead of one error per run. Rows are plain dicts; what the fields mean is decided by
:mod:`tuneforge.data.dataset`.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, DataError, DataProblem

__all__ = ["FORMATS", "Row", "detect_format", "fingerprint", "fingerprint_examples", "read_rows"]

FORMATS = ("jsonl", "json", "csv", "tsv", "conll", "squad")

_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".conll": "conll",
    ".txt": "conll",
    ".iob": "conll",
    ".bio": "conll",
}

# Long documents in one CSV cell are normal for fine-tuning data; the csv module's 128 KiB default is not.
_CSV_FIELD_LIMIT = 64 * 1024 * 1024

_SQUAD_QA_PATH = ("data", "[]", "paragraphs", "[]", "qas", "[]")
_SQUAD_ARTICLE_PATH = ("data", "[]")


@dataclass(frozen=True)
class Row:
    """One record of a data file: ``line`` is the 1-based line where it starts (None if unknown)."""

    line: int | None
    data: dict[str, Any]


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format name implied by the file extension; :class:`DataError` when the extension is unknown."""
    suffix = Path(path).suffix.lower()
    try:
        return _EXTENSIONS[suffix]
    except KeyError:
        raise DataError([DataProblem(
            str(path), None, None,
            f"cannot tell the format from the extension {suffix or '(none)'!r}",
            hint=f"rename the file (.jsonl, .json, .csv, .tsv, .conll) or pass --format ({', '.join(FORMATS)})",
        )]) from None


def read_rows(path: str | os.PathLike[str], *, format: str | None = None) -> tuple[str, list[Row]]:
    """Read ``path`` into rows. Returns ``(format, rows)``; the format is the one actually read.

    ``format`` is one of :data:`FORMATS`; when None it comes from the extension. A ``.json`` file holding
    JSON Lines is read as JSON Lines, and a JSON file in SQuAD layout is flattened (format ``"squad"``).
    """
    file = str(path)
    if format is not None and format not in FORMATS:
        raise ConfigError(f"format: unknown format {format!r} (choose from {', '.join(FORMATS)})")
    fmt = format or detect_format(path)
    text = _read_text(path)
    if not text.strip():
        raise DataError([DataProblem(file, None, None, "the file is empty",
                                     hint="check that the path points at the data file and that it was fully written")])
    if fmt == "jsonl":
        return "jsonl", _read_jsonl(text, file)
    if fmt in ("csv", "tsv"):
        return fmt, _read_delimited(text, file, delimiter="," if fmt == "csv" else "\t")
    if fmt == "conll":
        return "conll", _read_conll(text, file)
    return _read_json(text, file, squad_only=fmt == "squad")


def fingerprint(path: str | os.PathLike[str]) -> str:
    """``"sha256:<hex>"`` of the file's bytes, read in chunks so large files are not held in memory."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise _open_error(path, e) from None
    return "sha256:" + h.hexdigest()


def fingerprint_examples(examples: Iterable[Mapping[str, Any]]) -> str:
    """``"sha256:<hex>"`` of normalized examples as canonical JSON (sorted keys, one example per line).

    Two datasets with the same content get the same fingerprint whatever file format they came from.
    """
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(ex, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


# --- decoding ------------------------------------------------------------------------------------------------


def _open_error(path: str | os.PathLike[str], e: OSError) -> DataError:
    p = Path(path)
    if isinstance(e, FileNotFoundError):
        return DataError([DataProblem(str(path), None, None, "file not found",
                                      hint=f"check the path (looked in {p.resolve().parent})")])
    if isinstance(e, IsADirectoryError) or p.is_dir():
        return DataError([DataProblem(str(path), None, None, "is a folder, not a data file",
                                      hint="pass the path of one .jsonl/.csv/.tsv/.json/.conll file")])
    return DataError([DataProblem(str(path), None, None, f"cannot read the file: {e.strerror or e}")])


def _read_text(path: str | os.PathLike[str]) -> str:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise _open_error(path, e) from None
    return _decode(raw, str(path))


def _decode(raw: bytes, file: str) -> str:
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = e.start + bom
        line = raw.count(b"\n", 0, offset) + 1
        column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
        name, label = _guess_encoding(raw)
        base = Path(file).name
        hint = f"it looks like {label}; save the file as UTF-8 (e.g. iconv -f {name} -t UTF-8 {base} > utf8-{base})"
        message = (f"line {line} is not valid UTF-8: byte 0x{raw[offset]:02x} at byte offset {offset} "
                   f"(byte {column} of the line) cannot be decoded")
        raise DataError([DataProblem(file, line, None, message, hint=hint)]) from None


def _guess_encoding(raw: bytes) -> tuple[str, str]:
    """A best guess at what the file really is; only used to make the hint more precise."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16", "UTF-16 (as Excel's 'Unicode text' writes it)"
    sample = raw[: 1 << 20]
    if len(raw) > len(sample):
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    try:
        text = sample.decode("gb18030")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        non_ascii = [c for c in text if ord(c) > 127]
        # Latin-1 bytes sometimes decode as GB18030 too, but then the "characters" are rarely CJK.
        cjk = sum(1 for c in non_ascii if _is_cjk(c))
        if non_ascii and cjk / len(non_ascii) >= 0.8:
            return "GBK", "Chinese GBK/GB18030"
    try:
        sample.decode("cp1252")
    except UnicodeDecodeError:
        return "LATIN1", "Latin-1"
    return "CP1252", "Windows-1252 (Western European)"


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x3000 <= o <= 0x30FF
            or 0xFF00 <= o <= 0xFFEF or 0xAC00 <= o <= 0xD7AF)


def _split_lines(text: str) -> list[str]:
    # Not str.splitlines(): it also breaks on U+2028, form feeds and other characters that are data, not line ends.
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


# --- JSON Lines ----------------------------------------------------------------------------------------------


def _read_jsonl(text: str, file: str) -> list[Row]:
    rows: list[Row] = []
    problems: list[DataProblem] = []
    for number, line in enumerate(_split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            message = f"line {number} is not valid JSON: {e.msg} (column {e.colno})"
            problems.append(DataProblem(file, number, None, message, hint="each line must be one complete JSON object"))
            continue
        if not isinstance(value, dict):
            problems.append(DataProblem(file, number, None,
                                        f"line {number} is a JSON {_json_kind(value)}, not an object",
                                        hint='each line must be one JSON object, e.g. {"text": "...", "label": "..."}'))
            continue
        rows.append(Row(number, value))
    if problems:
        whole = _try_whole_json(text)
        if whole is not None and len(problems) > 1:
            # A pretty-printed JSON document saved as .jsonl fails on almost every line; say that once instead.
            raise DataError([DataProblem(file, None, None, "the file is one JSON document, not JSON Lines",
                                         hint="name it .json or pass --format json")])
        raise DataError(problems)
    return rows


def _try_whole_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


# --- CSV / TSV -----------------------------------------------------------------------------------------------


def _read_delimited(text: str, file: str, *, delimiter: str) -> list[Row]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    kind = "CSV" if delimiter == "," else "TSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    problems: list[DataProblem] = []
    rows: list[Row] = []
    header: list[str] | None = None
    header_line = 0
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problems.append(DataProblem(file, start, None, f"line {start} cannot be read as {kind}: {e}"))
            break  # the reader cannot resync after a low-level error
        if not record or all(not cell.strip() for cell in record):
            continue
        if header is None:
            header, header_line = _header(record, file, start, problems), start
            continue
        if len(record) != len(header):
            sep = "comma" if delimiter == "," else "tab"
            problems.append(DataProblem(
                file, start, None,
                f"line {start} has {len(record)} field(s) but the header (line {header_line}) has {len(header)}",
                hint=f'put double quotes around fields that contain a {sep} or a line break ("...")',
            ))
            continue
        rows.append(Row(start, dict(zip(header, record, strict=True))))
    if problems:
        raise DataError(problems)
    if header is None:
        raise DataError([DataProblem(file, None, None, "the file has no header row")])
    return rows


def _header(record: list[str], file: str, line: int, problems: list[DataProblem]) -> list[str]:
    names: list[str] = []
    for i, cell in enumerate(record):
        # pandas writes its index as an unnamed first column; give it a name rather than silently drop it.
        name = cell.strip() or f"unnamed_{i}"
        if name in names:
            problems.append(DataProblem(file, line, name, f"the header names the column {name!r} twice",
                                        hint="give every column a distinct name"))
        names.append(name)
    return names


# --- CoNLL ---------------------------------------------------------------------------------------------------

_CONLL_SPLIT = re.compile(r"[ \t]+")


def _read_conll(text: str, file: str) -> list[Row]:
    # Split on ASCII blanks only: a full-width space (U+3000) or NBSP can be a token in Chinese character data.
    parsed: list[tuple[int, list[str] | None]] = []  # (line, columns) or (line, None) for a sentence break
    for number, line in enumerate(_split_lines(text), start=1):
        stripped = line.strip(" \t")
        if not stripped:
            parsed.append((number, None))
            continue
        columns = _CONLL_SPLIT.split(stripped)
        if columns[0] == "-DOCSTART-":
            parsed.append((number, None))
            continue
        parsed.append((number, columns))
    token_lines = [cols for _, cols in parsed if cols is not None]
    tagged = any(len(cols) > 1 for cols in token_lines)

    rows: list[Row] = []
    problems: list[DataProblem] = []
    tokens: list[str] = []
    tags: list[str] = []
    first = 0
    broken = False

    def flush() -> None:
        nonlocal tokens, tags, broken
        if tokens and not broken:
            rows.append(Row(first, {"tokens": tokens, "tags": tags} if tagged else {"tokens": tokens}))
        tokens, tags, broken = [], [], False

    for number, cols in parsed:
        if cols is None:
            flush()
            continue
        if not tokens and not broken:
            first = number
        if tagged and len(cols) == 1:
            problems.append(DataProblem(file, number, "tags", f"line {number} has a token ({cols[0]!r}) but no tag",
                                        hint="put the tag after the token, separated by a space or a tab"))
            broken = True
            continue
        tokens.append(cols[0])
        if tagged:
            tags.append(cols[-1])
    flush()
    if problems:
        raise DataError(problems)
    return rows


# --- JSON and SQuAD ------------------------------------------------------------------------------------------


def _read_json(text: str, file: str, *, squad_only: bool) -> tuple[str, list[Row]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{") and not squad_only:
            # Many ".json" files are really JSON Lines; read them as such rather than fail.
            return "jsonl", _read_jsonl(text, file)
        message = f"line {e.lineno} is not valid JSON: {e.msg} (column {e.colno})"
        raise DataError([DataProblem(file, e.lineno, None, message,
                                     hint="check the JSON with a validator (python -m json.tool FILE)")]) from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list) and not squad_only \
            and not any(isinstance(a, dict) and "paragraphs" in a for a in doc["data"]):
        # {"data": [{...}, ...]} wraps a plain list of records (a common export); only SQuAD has "paragraphs".
        return "json", _rows_of_list(doc["data"], text, ("data", "[]"), file)
    if isinstance(doc, dict) and "data" in doc:
        return "squad", _flatten_squad(doc, text, file)
    if squad_only:
        raise DataError([DataProblem(file, None, None, 'not a SQuAD file: expected {"data": [{"paragraphs": ...}]}',
                                     hint="pass --format json for a list of objects")])
    if not isinstance(doc, list):
        if isinstance(doc, dict):
            found = f"an object with keys {', '.join(map(repr, list(doc)[:10]))}"
        else:
            found = f"a JSON {_json_kind(doc)}"
        expected = 'expected a JSON array of objects or SQuAD layout {"data": [...]}'
        raise DataError([DataProblem(file, None, None, f"{expected}, found {found}")])
    return "json", _rows_of_list(doc, text, ("[]",), file)


def _rows_of_list(items: list[Any], text: str, path: tuple[str, ...], file: str) -> list[Row]:
    lines = _lines_of(text, _object_offsets(text, path))
    if len(lines) != sum(isinstance(v, dict) for v in items):
        lines = [None] * len(items)  # duplicate keys can make the scan disagree with the parse; never guess
    rows: list[Row] = []
    problems: list[DataProblem] = []
    objects = iter(lines)
    for i, value in enumerate(items):
        if not isinstance(value, dict):
            problems.append(DataProblem(file, None, None,
                                        f"item {i} of the array is a JSON {_json_kind(value)}, not an object"))
            continue
        rows.append(Row(next(objects), value))
    if problems:
        raise DataError(problems)
    return rows


def _flatten_squad(doc: dict[str, Any], text: str, file: str) -> list[Row]:
    problems: list[DataProblem] = []
    qa_lines = iter(_lines_of(text, _object_offsets(text, _SQUAD_QA_PATH)))
    article_lines = iter(_lines_of(text, _object_offsets(text, _SQUAD_ARTICLE_PATH)))
    rows: list[Row] = []
    data = doc["data"]
    if not isinstance(data, list):
        raise DataError([DataProblem(file, None, "data", '"data" must be a list of articles')])
    for a, article in enumerate(data):
        if not isinstance(article, dict):
            problems.append(DataProblem(file, None, "data",
                                        f"article {a} is a JSON {_json_kind(article)}, not an object"))
            continue
        article_line = next(article_lines, None)
        paragraphs = article.get("paragraphs")
        if not isinstance(paragraphs, list):
            problems.append(DataProblem(file, article_line, "paragraphs",
                                        f'article {a} has no "paragraphs" list', hint="see the SQuAD v1.1 layout"))
            continue
        title = article.get("title")
        for p, para in enumerate(paragraphs):
            if not isinstance(para, dict) or not isinstance(para.get("qas"), list):
                problems.append(DataProblem(file, article_line, "qas",
                                            f'paragraph {p} of article {a} has no "qas" list'))
                continue
            for qa in para["qas"]:
                if not isinstance(qa, dict):
                    problems.append(DataProblem(file, article_line, "qas",
                                                f"a question in paragraph {p} of article {a} "
                                                f"is a JSON {_json_kind(qa)}, not an object"))
                    continue
                line = next(qa_lines, None)
                answers = qa.get("answers") or []
                row: dict[str, Any] = {
                    "id": qa.get("id"),
                    "title": title,
                    "context": para.get("context"),
                    "question": qa.get("question"),
                }
                if isinstance(answers, list) and all(isinstance(x, dict) for x in answers):
                    row["answers"] = {"text": [x.get("text") for x in answers],
                                      "answer_start": [x.get("answer_start") for x in answers]}
                else:
                    row["answers"] = answers  # let validation name the problem with its line
                rows.append(Row(line, row))
    if problems:
        raise DataError(problems)
    return rows


_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],]')


def _object_offsets(text: str, target: tuple[str, ...]) -> list[int]:
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


def _lines_of(text: str, offsets: list[int]) -> list[int | None]:
    lines: list[int | None] = []
    line, pos = 1, 0
    for off in offsets:
        line += text.count("\n", pos, off)
        pos = off
        lines.append(line)
    return lines
