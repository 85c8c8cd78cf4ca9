"""Readers that turn a data file into rows, remembering the line each record starts on.

Every reader collects all the problems it finds and raises one :class:`~tuneforge.errors.DataError`, so a user
fixes a file in one pass instead of one error per run. Rows are plain dicts; what the fields mean is decided by
:mod:`tuneforge.data.dataset`.
"""

from __future__ import annotations

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

from tuneforge.data.jsontext import (
    JsonReader,
    TooDeep,
    deep_offset,
    duplicate_key_warning,
    json_kind,
    lines_of,
    loads,
    object_offsets,
    too_deep_problem,
)
from tuneforge.data.textfile import MAX_FILE_BYTES, open_error, open_regular, read_text
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


def read_rows(path: str | os.PathLike[str], *, format: str | None = None, delimiter: str | None = None,
              encoding: str | None = None, max_bytes: int | None = MAX_FILE_BYTES,
              warnings: list[DataProblem] | None = None, detect_encoding: bool = True) -> tuple[str, list[Row]]:
    """Read ``path`` into rows. Returns ``(format, rows)``; the format is the one actually read.

    ``format`` is one of :data:`FORMATS`; when None it comes from the extension. A ``.json`` file holding
    JSON Lines is read as JSON Lines, and a JSON file in SQuAD layout is flattened (format ``"squad"``).
    ``delimiter`` is the CSV/TSV field separator (one character, or ``tab``/``comma``/``semicolon``/``pipe``);
    None sniffs it (``,``, ``;``, tab or ``|``, the format's own first). ``encoding`` forces a text encoding;
    None means UTF-8, a marked or evident UTF-16/32, or (unless ``detect_encoding`` is False) a legacy encoding
    such as GBK, Big5, Shift-JIS or Windows-1252 detected with confidence (a warning names it); a file whose
    encoding cannot be told is refused. Only a regular file of at most ``max_bytes`` is read.
    Problems that do not stop the file being read (a key repeated in one JSON object, a detected encoding) are
    appended to ``warnings`` when it is given.
    """
    file = str(path)
    if format is not None and format not in FORMATS:
        raise ConfigError(f"format: unknown format {format!r} (choose from {', '.join(FORMATS)})")
    sep = _delimiter(delimiter)
    if not os.path.isfile(path) and (os.path.isdir(path) or not os.path.lexists(path)):
        raise open_error(path, IsADirectoryError(file) if os.path.isdir(path) else FileNotFoundError(file))
    fmt = format or detect_format(path)
    found = warnings if warnings is not None else []
    text = read_text(path, encoding=encoding, max_bytes=max_bytes, warnings=found, detect=detect_encoding)
    if not text.strip():
        raise DataError([DataProblem(file, None, None, "the file is empty",
                                     hint="check that the path points at the data file and that it was fully written")])
    if fmt == "jsonl":
        return "jsonl", _read_jsonl(text, file, found)
    if fmt in ("csv", "tsv"):
        default = "," if fmt == "csv" else "\t"
        return fmt, _read_delimited(text, file, delimiter=sep or _sniff(text, default))
    if fmt == "conll":
        return "conll", _read_conll(text, file)
    return _read_json(text, file, squad_only=fmt == "squad", warnings=found)


def fingerprint(path: str | os.PathLike[str]) -> str:
    """``"sha256:<hex>"`` of the file's bytes, read in chunks so large files are not held in memory."""
    h = hashlib.sha256()
    fd, _ = open_regular(path, max_bytes=None)
    try:
        with os.fdopen(fd, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise open_error(path, e) from None
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


def _split_lines(text: str) -> list[str]:
    # Not str.splitlines(): it also breaks on U+2028, form feeds and other characters that are data, not line ends.
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


# --- JSON Lines ----------------------------------------------------------------------------------------------


def _read_jsonl(text: str, file: str, warnings: list[DataProblem]) -> list[Row]:
    rows: list[Row] = []
    problems: list[DataProblem] = []
    reader = JsonReader()
    for number, line in enumerate(_split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            value = reader.loads(line)
        except json.JSONDecodeError as e:
            message = f"line {number} is not valid JSON: {e.msg} (column {e.colno})"
            problems.append(DataProblem(file, number, None, message, hint="each line must be one complete JSON object"))
            continue
        except TooDeep:
            problems.append(too_deep_problem(file, number))
            continue
        warnings.extend(duplicate_key_warning(file, number, key) for key in reader.dupes)
        if not isinstance(value, dict):
            problems.append(DataProblem(file, number, None,
                                        f"line {number} is a JSON {json_kind(value)}, not an object",
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
        return loads(text, [])
    except (json.JSONDecodeError, TooDeep):
        return None


# --- CSV / TSV -----------------------------------------------------------------------------------------------


_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
_SEP_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe", " ": "space"}
_SNIFFED = (",", ";", "\t", "|")


def _delimiter(value: str | None) -> str | None:
    if value is None:
        return None
    sep = _DELIMITER_NAMES.get(value.lower(), value)
    if len(sep) != 1 or sep in "\"\r\n" or sep.isalnum():
        raise ConfigError(f"delimiter: {value!r} is not a field separator (one character such as , ; | or "
                          "'tab')")
    return sep


def _sniff(text: str, default: str) -> str:
    """The separator of a delimited text: the first of ``default``, ``,``, ``;``, tab, ``|`` that splits the first
    records (quotes respected) into the same number of fields, more than one. Excel writes ``;`` where the
    decimal separator is a comma."""
    sample = text[: 1 << 16]
    if len(text) > len(sample):
        sample = sample[: sample.rfind("\n") + 1] or sample
    best, best_fields = default, 1
    widest, widest_header = default, 1  # when no separator is consistent: the one that splits the header most
    for sep in dict.fromkeys((default, *_SNIFFED)):
        counts: list[int] = []
        try:
            for record in csv.reader(io.StringIO(sample, newline=""), delimiter=sep):
                if record and any(cell.strip() for cell in record):
                    counts.append(len(record))
                if len(counts) >= 20:
                    break
        except csv.Error:
            continue
        if not counts:
            continue
        if counts[0] > 1 and all(c == counts[0] for c in counts):
            if sep == default:
                return sep
            if counts[0] > best_fields:
                best, best_fields = sep, counts[0]
        if counts[0] > widest_header:
            widest, widest_header = sep, counts[0]
    return best if best_fields > 1 else widest


def _read_delimited(text: str, file: str, *, delimiter: str) -> list[Row]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    kind = "TSV" if delimiter == "\t" else "CSV"
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
            sep = _SEP_NAMES.get(delimiter, repr(delimiter))
            problems.append(DataProblem(
                file, start, None,
                f"line {start} has {len(record)} field(s) but the header (line {header_line}) has {len(header)} "
                f"({sep}-separated)",
                hint=f'put double quotes around fields that contain a {sep} or a line break ("..."), or pass the '
                     "right delimiter",
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


def _read_json(text: str, file: str, *, squad_only: bool, warnings: list[DataProblem]) -> tuple[str, list[Row]]:
    dupes: list[str] = []
    try:
        doc = loads(text, dupes)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{") and not squad_only:
            # Many ".json" files are really JSON Lines; read them as such rather than fail.
            return "jsonl", _read_jsonl(text, file, warnings)
        message = f"line {e.lineno} is not valid JSON: {e.msg} (column {e.colno})"
        raise DataError([DataProblem(file, e.lineno, None, message,
                                     hint="check the JSON with a validator (python -m json.tool FILE)")]) from None
    except TooDeep:
        offset = deep_offset(text)
        raise DataError([too_deep_problem(file, None if offset is None else text.count("\n", 0, offset) + 1)]) from None
    warnings.extend(duplicate_key_warning(file, None, key) for key in dict.fromkeys(dupes))
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
            found = f"a JSON {json_kind(doc)}"
        expected = 'expected a JSON array of objects or SQuAD layout {"data": [...]}'
        raise DataError([DataProblem(file, None, None, f"{expected}, found {found}")])
    return "json", _rows_of_list(doc, text, ("[]",), file)


def _rows_of_list(items: list[Any], text: str, path: tuple[str, ...], file: str) -> list[Row]:
    lines = lines_of(text, object_offsets(text, path))
    if len(lines) != sum(isinstance(v, dict) for v in items):
        lines = [None] * len(items)  # duplicate keys can make the scan disagree with the parse; never guess
    rows: list[Row] = []
    problems: list[DataProblem] = []
    objects = iter(lines)
    for i, value in enumerate(items):
        if not isinstance(value, dict):
            problems.append(DataProblem(file, None, None,
                                        f"item {i} of the array is a JSON {json_kind(value)}, not an object"))
            continue
        rows.append(Row(next(objects), value))
    if problems:
        raise DataError(problems)
    return rows


def _flatten_squad(doc: dict[str, Any], text: str, file: str) -> list[Row]:
    problems: list[DataProblem] = []
    qa_lines = iter(lines_of(text, object_offsets(text, _SQUAD_QA_PATH)))
    article_lines = iter(lines_of(text, object_offsets(text, _SQUAD_ARTICLE_PATH)))
    rows: list[Row] = []
    data = doc["data"]
    if not isinstance(data, list):
        raise DataError([DataProblem(file, None, "data", '"data" must be a list of articles')])
    for a, article in enumerate(data):
        if not isinstance(article, dict):
            problems.append(DataProblem(file, None, "data",
                                        f"article {a} is a JSON {json_kind(article)}, not an object"))
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
                                                f"is a JSON {json_kind(qa)}, not an object"))
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
