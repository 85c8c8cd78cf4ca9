"""The generic part of reading a data file for a task: the :class:`Dataset` it becomes, which column holds what
(:class:`ColumnMap`), and the helpers every task's reader uses to report problems row by row.

A task's reader (``tuneforge.tasks.<task>.data``) opens the file with :func:`open_rows`, picks its columns with
:meth:`ReadContext.column`, reads each row with helpers such as :func:`text_value`, and ends with
:meth:`ReadContext.dataset`, which raises one :class:`~tuneforge.errors.DataError` listing every problem with its
file, line and field; problems that repeat on many rows (a missing column, an unknown label) are reported once with
the other lines counted, so the list stays readable. Use :func:`tuneforge.tasks.load_dataset` to read a file.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tuneforge.data.formats import Row, fingerprint, read_rows
from tuneforge.errors import DataError, DataProblem

__all__ = [
    "MAX_LABEL_CHARS",
    "ColumnMap",
    "Dataset",
    "Problems",
    "ReadContext",
    "ReadOptions",
    "case_variant_warnings",
    "check_known",
    "column_flag",
    "describe_kind",
    "generic_option_errors",
    "is_blank",
    "is_missing",
    "label_too_long",
    "open_rows",
    "parse_json_list",
    "sort_labels",
    "text_value",
]

#: the longest label (class name, entity type) accepted: a longer one is almost always a text column read as labels
MAX_LABEL_CHARS = 1000
_SHOW_LABELS = 20


def column_flag(role: str) -> str:
    """The CLI flag that names the column for ``role`` (``text_pair`` → ``--text-pair-column``)."""
    return f"--{role.replace('_', '-')}-column"


@dataclass(frozen=True)
class ColumnMap:
    """Which column of the file holds what. ``None`` means: auto-detect from the usual names."""

    text: str | None = None
    text_pair: str | None = None
    label: str | None = None
    tokens: str | None = None
    tags: str | None = None
    question: str | None = None
    context: str | None = None
    answers: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class ReadOptions:
    """The options of a task's reader (see :func:`tuneforge.tasks.load_dataset` for each one's meaning)."""

    columns: ColumnMap = field(default_factory=ColumnMap)
    format: str | None = None
    require_labels: bool = True
    label_set: Sequence[str] | None = None
    multi_label: bool | None = None
    label_separator: str | None = None
    min_classes: int = 1
    strict_bio: bool = True
    repair_offsets: bool = False
    allow_empty: bool = False
    delimiter: str | None = None
    encoding: str | None = None


@dataclass
class Dataset:
    """A validated dataset: normalized examples plus where each came from.

    ``labels`` is the label space: sorted class names (classification), entity types without ``B-``/``I-``
    (ner), or ``[]`` (qa). ``warnings`` lists problems in the source file that were accepted (for example
    I- tags without a B- when loaded with ``strict_bio=False``).
    """

    path: str
    format: str
    task: str
    examples: list[dict[str, Any]]
    lines: list[int | None]
    fingerprint: str
    labels: list[str]
    multi_label: bool = False
    warnings: list[DataProblem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    def select(self, indices: Iterable[int]) -> Dataset:
        """A dataset holding the examples at ``indices`` (in that order), with the same label space."""
        idx = list(indices)
        return replace(self, examples=[self.examples[i] for i in idx], lines=[self.lines[i] for i in idx],
                       labels=list(self.labels), warnings=list(self.warnings))


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Distinct labels sorted; all-numeric labels sort by value ("2" before "10")."""
    distinct = set(labels)
    if distinct and all(re.fullmatch(r"-?\d+", x) for x in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


def generic_option_errors(options: ReadOptions) -> list[str]:
    """The problems with reader options that no task accepts (an empty separator, ``min_classes`` below 1, ...)."""
    errors: list[str] = []
    if options.label_separator == "":
        errors.append("label_separator: must not be empty")
    if options.min_classes < 1:
        errors.append(f"min_classes: must be at least 1, got {options.min_classes}")
    if options.label_set is not None and isinstance(options.label_set, str):
        errors.append("label_set: must be a list of labels, not one string")
    return errors


# --- problem collection -------------------------------------------------------------------------------------


class Problems:
    """Collects problems; ``group`` merges repeats of the same problem into one entry that counts the others."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._items: list[DataProblem | list[Any]] = []
        self._groups: dict[Any, list[Any]] = {}

    def add(self, line: int | None, field: str | None, message: str, hint: str | None = None) -> None:
        self._items.append(DataProblem(self.file, line, field, message, hint))

    def group(self, key: Any, line: int | None, field: str | None, message: str, hint: str | None = None) -> None:
        entry = self._groups.get(key)
        if entry is None:
            entry = [DataProblem(self.file, line, field, message, hint), []]
            self._groups[key] = entry
            self._items.append(entry)
        else:
            entry[1].append(line)

    def problems(self) -> list[DataProblem]:
        out: list[DataProblem] = []
        for item in self._items:
            if isinstance(item, DataProblem):
                out.append(item)
                continue
            first, others = item
            if others:
                n = len(others)
                shown = ", ".join(str(x) for x in others[:5] if x is not None)
                more = f": line{'s' if n > 1 else ''} {shown}{', ...' if n > 5 else ''}" if shown else ""
                first = replace(first, message=f"{first.message} (and {n} more row{'s' if n > 1 else ''}{more})")
            out.append(first)
        # File-level problems first, then in file order.
        return sorted(out, key=lambda p: (p.line is not None, p.line or 0))

    def raise_if_any(self) -> None:
        if self._items:
            raise DataError(self.problems())


@dataclass
class ReadContext:
    """One file being read for a task: its rows, the reader options and the problems found so far."""

    file: str
    format: str
    rows: list[Row]
    options: ReadOptions
    problems: Problems
    path: str | os.PathLike[str] = ""
    warnings: list[DataProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        seen: dict[str, None] = {}
        for row in self.rows:
            for k in row.data:
                seen.setdefault(k, None)
        self.found = list(seen)

    @property
    def columns(self) -> ColumnMap:
        return self.options.columns

    @property
    def require_labels(self) -> bool:
        return self.options.require_labels

    @property
    def allow_empty(self) -> bool:
        """Keep blank texts (for cleaning, which removes them with a reason)."""
        return self.options.allow_empty

    def found_text(self) -> str:
        names = ", ".join(self.found[:15]) + (", ..." if len(self.found) > 15 else "")
        return f"columns found: {names or 'none'}"

    def column(self, role: str, aliases: Sequence[str], *, required: bool) -> str | None:
        """The column for ``role``: the one named in the :class:`ColumnMap`, else the first of ``aliases`` the file
        has; None when absent (after reporting it once if required or named explicitly)."""
        given = getattr(self.columns, role, None)
        if given is not None:
            if given in self.found:
                return given
            self.problems.add(None, given, f"column {given!r} not found ({self.found_text()})",
                              hint=f"check the name given to {column_flag(role)}")
            return None
        for name in aliases:
            if name in self.found:
                return name
        if required:
            expected = ", ".join(aliases)
            self.problems.add(None, role, f"no {role} column: expected one of {expected} ({self.found_text()})",
                              hint=f"name the column with {column_flag(role)} COLUMN")
        return None

    def dataset(self, task: str, examples: list[dict[str, Any]], lines: list[int | None], labels: list[str], *,
                multi_label: bool = False) -> Dataset:
        """The validated dataset, or one :class:`~tuneforge.errors.DataError` with every problem found."""
        self.problems.raise_if_any()
        return Dataset(path=self.file, format=self.format, task=task, examples=examples, lines=lines,
                       fingerprint=fingerprint(self.path), labels=labels, multi_label=multi_label,
                       warnings=list(self.warnings))


def open_rows(path: str | os.PathLike[str], options: ReadOptions) -> ReadContext:
    """Read the records of ``path`` for a task's reader; a file without records is a DataError."""
    file = str(path)
    warnings: list[DataProblem] = []  # what the reader accepted but should be said (a repeated JSON key)
    fmt, rows = read_rows(path, format=options.format, delimiter=options.delimiter, encoding=options.encoding,
                          warnings=warnings)
    problems = Problems(file)
    if not rows:
        problems.add(None, None, "the file holds no records", hint="a CSV/TSV file needs rows below its header")
        problems.raise_if_any()
    return ReadContext(file, fmt, rows, options, problems, path=path, warnings=warnings)


# --- values -------------------------------------------------------------------------------------------------


def is_blank(text: str) -> bool:
    """Whether ``text`` holds nothing but whitespace, NUL and other control characters."""
    return all(c.isspace() or unicodedata.category(c) == "Cc" for c in text.strip())


def is_missing(value: Any) -> bool:
    """None, or a string that shows nothing (see :func:`is_blank`)."""
    return value is None or (isinstance(value, str) and is_blank(value))


def describe_kind(value: Any) -> str:
    """What a value is, for a message: ``a list``, ``the number 3``..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def text_value(ctx: ReadContext, row: Row, col: str, role: str, *, optional: bool = False) -> str | None:
    """A required, non-blank string from ``col``; reports the problem and returns None otherwise."""
    if col not in row.data or row.data[col] is None:
        if not optional:
            ctx.problems.group(("missing", col), row.line, col, f"no value for {role} (column {col!r})")
        return None
    value = row.data[col]
    if not isinstance(value, str):
        message = f"{role} must be a string, got {describe_kind(value)}"
        ctx.problems.group(("type", col, message), row.line, col, message)
        return None
    if is_blank(value) and not ctx.allow_empty:
        ctx.problems.group(("empty", col), row.line, col, f"empty {role}")
        return None
    return value


def parse_json_list(value: str) -> Any:
    """A CSV cell holding a JSON list (pandas writes lists that way) parsed; the cell itself unless it parses."""
    try:
        return json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        return value


def check_known(ctx: ReadContext, line: int | None, col: str | None, value: str, known: Sequence[str],
                what: str) -> None:
    """Report ``value`` when it is not one of ``known`` (with a "did you mean" guess)."""
    if value in known:
        return
    ordered = sort_labels(known)
    shown = ", ".join(ordered[:_SHOW_LABELS]) + (", ..." if len(ordered) > _SHOW_LABELS else "")
    lower = {k.lower(): k for k in ordered}
    guess = [lower[value.lower()]] if value.lower() in lower else difflib.get_close_matches(value, ordered, n=1)
    hint = f"did you mean {guess[0]!r}?" if guess else f"fix the row or add {value!r} to the label set"
    ctx.problems.group(("unknown", col, value), line, col, f"unknown {what} {value!r} (known: {shown})", hint=hint)


def case_variant_warnings(file: str, col: str | None, first_line: dict[str, int | None], what: str,
                          hint: str) -> list[DataProblem]:
    """Warnings for labels that differ only in case or spacing (``Pos``, ``pos``, ``POS``): each is read as its
    own ``what``, which is rarely meant. ``first_line`` maps every distinct label to the line it first occurs on."""
    spellings: dict[str, list[str]] = {}
    for label in first_line:
        spellings.setdefault(" ".join(label.split()).casefold(), []).append(label)
    out: list[DataProblem] = []
    for variants in spellings.values():
        if len(variants) < 2:
            continue
        variants.sort(key=lambda v: (first_line[v] is None, first_line[v] or 0))
        shown = ", ".join(f"{v!r}" + (f" (line {first_line[v]})" if first_line[v] is not None else "")
                          for v in variants)
        line = first_line[variants[1]]
        out.append(DataProblem(file, line, col, f"{len(variants)} {what}s differ only in case or spacing: {shown}; "
                                                f"they are read as {len(variants)} different {what}s", hint))
    return out


def label_too_long(label: str) -> str | None:
    """The problem with a label longer than :data:`MAX_LABEL_CHARS`, or None."""
    if len(label) <= MAX_LABEL_CHARS:
        return None
    return f"a label longer than {MAX_LABEL_CHARS:,} characters (is the label column a text column?)"
