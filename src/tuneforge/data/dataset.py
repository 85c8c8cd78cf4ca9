"""Load a data file for one task and validate it into normalized examples.

Normalized examples are what every later stage (cleaning, splitting, features, metrics) reads:

* classification: ``{"text": str, "text_pair": str | None, "label": str | list[str] | None}``
* ner: ``{"tokens": list[str], "tags": list[str] | None}`` (BIO / IOB2 tags)
* qa: ``{"id": str, "title": str | None, "question": str, "context": str,
  "answers": {"text": list[str], "answer_start": list[int]}}`` (the Hugging Face SQuAD layout plus its title)

Validation reads the whole file and raises one :class:`~tuneforge.errors.DataError` listing every problem with
its file, line and field; problems that repeat on many rows (a missing column, an unknown label) are reported once
with the other lines counted, so the list stays readable.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from tuneforge.data.formats import Row, fingerprint, read_rows
from tuneforge.errors import ConfigError, DataError, DataProblem

__all__ = ["TASKS", "ColumnMap", "Dataset", "load_dataset", "sort_labels"]

TASKS = ("classification", "ner", "qa")

# Auto-detected column names, most specific first.
_ALIASES: dict[str, tuple[str, ...]] = {
    "text": ("text", "sentence", "content", "review", "query", "utterance", "question", "sentence1"),
    "text_pair": ("text_pair", "sentence2", "hypothesis"),
    "label": ("label", "labels", "intent", "category", "class", "sentiment", "target"),
    "tokens": ("tokens", "words"),
    "tags": ("tags", "ner_tags", "labels"),
    "question": ("question",),
    "context": ("context", "passage", "paragraph"),
    "answers": ("answers",),
    "id": ("id", "qid", "question_id"),
}
_TASK_FIELDS = {
    "classification": ("text", "text_pair", "label"),
    "ner": ("tokens", "tags"),
    "qa": ("question", "context", "answers", "id"),
}
_BIO = re.compile(r"^([BI])-(.+)$")
_OTHER_SCHEME = re.compile(r"^([SEUL])-(.+)$")
_SHOW_LABELS = 20


def _flag(role: str) -> str:
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


def load_dataset(
    path: str | os.PathLike[str],
    task: str,
    *,
    columns: ColumnMap | None = None,
    format: str | None = None,
    require_labels: bool = True,
    label_set: Sequence[str] | None = None,
    multi_label: bool | None = None,
    label_separator: str | None = None,
    min_classes: int = 1,
    strict_bio: bool = True,
    allow_empty: bool = False,
) -> Dataset:
    """Read ``path`` and validate it for ``task`` (one of :data:`TASKS`).

    Args:
        columns: column names to use instead of the auto-detected ones.
        format: the file format (see :data:`tuneforge.data.formats.FORMATS`); None means from the extension.
        require_labels: when False, labels/tags/answers may be absent (prediction input).
        label_set: the allowed labels (classification) or entity types (ner; ``B-``/``I-`` prefixes allowed);
            when given it also becomes the dataset's label space.
        multi_label: classification only. None = auto (True when a label is a JSON list or
            ``label_separator`` is given).
        label_separator: splits a string label into several when multi-label (default ``"|"``).
        min_classes: the fewest distinct labels accepted when labels are required (the trainer passes 2).
        strict_bio: when False, an ``I-X`` tag that does not follow ``B-X``/``I-X`` is a warning, not an error,
            and is rewritten to ``B-X`` (conlleval's reading of it)
            (some public corpora, such as Weibo NER, contain a few).
        allow_empty: keep blank texts instead of reporting them (``data clean`` removes them with a reason).

    Raises:
        ConfigError: an unknown task or an option that does not apply to it.
        DataError: every problem found in the file.
    """
    cols = columns or ColumnMap()
    _check_options(task, cols, label_set, multi_label, label_separator, min_classes)
    file = str(path)
    fmt, rows = read_rows(path, format=format)
    problems = _Problems(file)
    if not rows:
        problems.add(None, None, "the file holds no records", hint="a CSV/TSV file needs rows below its header")
        problems.raise_if_any()
    ctx = _Context(file, rows, cols, problems, require_labels, allow_empty)
    warnings: list[DataProblem] = []
    multi = False
    if task == "classification":
        # The same spelling rules as the file's labels, so label_set=[0, 1] matches labels 0/1 read from a CSV.
        known = [_scalar_label(x) for x in label_set] if label_set is not None else None
        examples, lines, labels, multi = _load_classification(ctx, known, multi_label, label_separator, min_classes)
    elif task == "ner":
        examples, lines, labels = _load_ner(ctx, label_set, strict_bio, warnings)
    else:
        examples, lines = _load_qa(ctx)
        labels = []
    problems.raise_if_any()
    return Dataset(path=file, format=fmt, task=task, examples=examples, lines=lines, fingerprint=fingerprint(path),
                   labels=labels, multi_label=multi, warnings=warnings)


def _check_options(task: str, cols: ColumnMap, label_set: Sequence[str] | None, multi_label: bool | None,
                   label_separator: str | None, min_classes: int) -> None:
    errors: list[str] = []
    if task not in TASKS:
        errors.append(f"task: unknown task {task!r} (choose from {', '.join(TASKS)})")
    else:
        for f in fields(cols):
            if getattr(cols, f.name) is not None and f.name not in _TASK_FIELDS[task]:
                errors.append(f"{_flag(f.name)}: does not apply to the {task} task")
        if task != "classification" and (multi_label or label_separator is not None):
            errors.append(f"multi_label/label_separator: only apply to classification, not {task}")
        if task == "qa" and label_set is not None:
            errors.append("label_set: does not apply to the qa task")
    if label_separator == "":
        errors.append("label_separator: must not be empty")
    if min_classes < 1:
        errors.append(f"min_classes: must be at least 1, got {min_classes}")
    if label_set is not None and isinstance(label_set, str):
        errors.append("label_set: must be a list of labels, not one string")
    if errors:
        raise ConfigError(errors)


# --- problem collection -------------------------------------------------------------------------------------


class _Problems:
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
class _Context:
    file: str
    rows: list[Row]
    columns: ColumnMap
    problems: _Problems
    require_labels: bool
    allow_empty: bool = False  # keep blank texts (for cleaning, which removes them with a reason)

    def __post_init__(self) -> None:
        seen: dict[str, None] = {}
        for row in self.rows:
            for k in row.data:
                seen.setdefault(k, None)
        self.found = list(seen)

    def found_text(self) -> str:
        names = ", ".join(self.found[:15]) + (", ..." if len(self.found) > 15 else "")
        return f"columns found: {names or 'none'}"

    def column(self, role: str, *, required: bool) -> str | None:
        """The column for ``role``; None when absent (after reporting it once if required or named explicitly)."""
        given = getattr(self.columns, role, None)
        if given is not None:
            if given in self.found:
                return given
            self.problems.add(None, given, f"column {given!r} not found ({self.found_text()})",
                              hint=f"check the name given to {_flag(role)}")
            return None
        for name in _ALIASES[role]:
            if name in self.found:
                return name
        if required:
            expected = ", ".join(_ALIASES[role])
            self.problems.add(None, role, f"no {role} column: expected one of {expected} ({self.found_text()})",
                              hint=f"name the column with {_flag(role)} COLUMN")
        return None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _text(ctx: _Context, row: Row, col: str, role: str, *, optional: bool = False) -> str | None:
    """A required, non-empty string from ``col``; reports the problem and returns None otherwise."""
    if col not in row.data or row.data[col] is None:
        if not optional:
            ctx.problems.group(("missing", col), row.line, col, f"no value for {role} (column {col!r})")
        return None
    value = row.data[col]
    if not isinstance(value, str):
        message = f"{role} must be a string, got {_kind(value)}"
        ctx.problems.group(("type", col, message), row.line, col, message)
        return None
    if not value.strip() and not ctx.allow_empty:
        ctx.problems.group(("empty", col), row.line, col, f"empty {role}")
        return None
    return value


def _parse_json_list(value: str) -> Any:
    # CSV cells sometimes hold JSON lists (pandas writes lists that way); only a clean parse counts.
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


# --- classification -----------------------------------------------------------------------------------------


def _scalar_label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        raise ValueError(f"label must be a class name, got {_kind(value)} (regression is not supported)")
    if isinstance(value, str):
        return value.strip()
    raise ValueError(f"label must be a string, got {_kind(value)}")


def _multi_label(value: Any, separator: str) -> list[str]:
    if isinstance(value, str) and value.strip().startswith("["):
        value = _parse_json_list(value.strip())
    if isinstance(value, str):
        items: list[Any] = value.split(separator)
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    out: list[str] = []
    for item in items:
        label = _scalar_label(item)
        if label and label not in out:
            out.append(label)
    return out


def _load_classification(
    ctx: _Context, label_set: Sequence[str] | None, multi_label: bool | None, separator: str | None,
    min_classes: int,
) -> tuple[list[dict[str, Any]], list[int | None], list[str], bool]:
    text_col = ctx.column("text", required=True)
    pair_col = ctx.column("text_pair", required=False)
    label_col = ctx.column("label", required=ctx.require_labels)
    if text_col is None:
        return [], [], [], bool(multi_label)
    if multi_label is None:
        multi = separator is not None or (
            label_col is not None and any(isinstance(r.data.get(label_col), list) for r in ctx.rows))
    else:
        multi = multi_label
    sep = separator or "|"
    examples: list[dict[str, Any]] = []
    lines: list[int | None] = []
    for row in ctx.rows:
        text = _text(ctx, row, text_col, "text")
        pair = _text(ctx, row, pair_col, "text_pair", optional=True) if pair_col else None
        bad = text is None or (pair_col is not None and pair is None and row.data.get(pair_col) is not None)
        label: str | list[str] | None = None
        if label_col is not None:
            raw = row.data.get(label_col)
            if _missing(raw) or (isinstance(raw, list) and not multi and not raw):
                if ctx.require_labels:
                    ctx.problems.group(("missing", label_col), row.line, label_col, "label missing")
                    bad = True
            elif isinstance(raw, list) and not multi:
                ctx.problems.group(("list", label_col), row.line, label_col, "label is a list but multi-label is off",
                                   hint="load it as multi-label (--multi-label)")
                bad = True
            else:
                try:
                    label = _multi_label(raw, sep) if multi else _scalar_label(raw)
                except ValueError as e:
                    ctx.problems.group(("type", label_col, str(e)), row.line, label_col, str(e))
                    bad = True
        if not bad:
            assert text is not None
            examples.append({"text": text, "text_pair": pair, "label": label})
            lines.append(row.line)

    distinct: set[str] = set()
    for ex, line in zip(examples, lines, strict=True):
        for lab in _as_list(ex["label"]):
            distinct.add(lab)
            if label_set is not None:
                _check_known(ctx, line, label_col, lab, label_set, "label")
    if label_col is not None and ctx.require_labels and examples and len(distinct) < min_classes:
        shown = ", ".join(repr(x) for x in sort_labels(distinct)) or "none"
        ctx.problems.add(None, label_col, f"only {len(distinct)} distinct label(s) ({shown}); "
                                          f"training needs at least {min_classes}",
                         hint=f"check that {_flag('label')} names the label column and that every class has examples")
    labels = sort_labels(label_set) if label_set is not None else sort_labels(distinct)
    return examples, lines, labels, multi


def _as_list(label: str | list[str] | None) -> list[str]:
    if label is None:
        return []
    return label if isinstance(label, list) else [label]


def _check_known(ctx: _Context, line: int | None, col: str | None, value: str, known: Sequence[str], what: str) -> None:
    if value in known:
        return
    ordered = sort_labels(known)
    shown = ", ".join(ordered[:_SHOW_LABELS]) + (", ..." if len(ordered) > _SHOW_LABELS else "")
    lower = {k.lower(): k for k in ordered}
    guess = [lower[value.lower()]] if value.lower() in lower else difflib.get_close_matches(value, ordered, n=1)
    hint = f"did you mean {guess[0]!r}?" if guess else f"fix the row or add {value!r} to the label set"
    ctx.problems.group(("unknown", col, value), line, col, f"unknown {what} {value!r} (known: {shown})", hint=hint)


# --- ner ----------------------------------------------------------------------------------------------------


def _sequence(ctx: _Context, row: Row, col: str, role: str, *, optional: bool) -> list[Any] | None:
    value = row.data.get(col)
    if value is None:
        if not optional:
            ctx.problems.group(("missing", col), row.line, col, f"no value for {role} (column {col!r})")
        return None
    if isinstance(value, str):
        # CSV/TSV cells: a JSON list, or items separated by spaces.
        parsed = _parse_json_list(value.strip()) if value.strip().startswith("[") else value.split()
        value = parsed
    if not isinstance(value, list):
        message = f"{role} must be a list of strings, got {_kind(value)}"
        ctx.problems.group(("type", col, message), row.line, col, message)
        return None
    return value


def _entity_types(label_set: Sequence[str]) -> list[str]:
    out = []
    for label in label_set:
        m = _BIO.match(label)
        if label != "O":
            out.append(m.group(2) if m else label)
    return sort_labels(out)


def _load_ner(ctx: _Context, label_set: Sequence[str] | None, strict_bio: bool,
              warnings: list[DataProblem]) -> tuple[list[dict[str, Any]], list[int | None], list[str]]:
    tokens_col = ctx.column("tokens", required=True)
    tags_col = ctx.column("tags", required=ctx.require_labels)
    if tokens_col is None:
        return [], [], []
    known = _entity_types(label_set) if label_set is not None else None
    examples: list[dict[str, Any]] = []
    lines: list[int | None] = []
    types: set[str] = set()
    for row in ctx.rows:
        tokens = _sequence(ctx, row, tokens_col, "tokens", optional=False)
        tags = _sequence(ctx, row, tags_col, "tags", optional=not ctx.require_labels) if tags_col else None
        ok = tokens is not None and _check_tokens(ctx, row, tokens_col, tokens)
        if tags_col is not None and tags is None and (ctx.require_labels or row.data.get(tags_col) is not None):
            ok = False
        if ok and tags is not None:
            assert tokens is not None
            ok = _check_tags(ctx, row, tags_col, tokens, tags, strict_bio, warnings, known, types)
        if ok:
            examples.append({"tokens": tokens, "tags": tags})
            lines.append(row.line)
    labels = known if known is not None else sort_labels(types)
    return examples, lines, labels


def _check_tokens(ctx: _Context, row: Row, col: str, tokens: list[Any]) -> bool:
    if not tokens:
        ctx.problems.group(("empty", col), row.line, col, "empty sentence (no tokens)")
        return False
    for i, tok in enumerate(tokens):
        if not isinstance(tok, str):
            ctx.problems.add(row.line, col, f"token {i} is {_kind(tok)}, not a string")
            return False
        if not tok.strip():
            ctx.problems.add(row.line, col, f"token {i} is empty or whitespace",
                             hint="drop empty tokens (and their tags) from the sentence")
            return False
    return True


def _check_tags(ctx: _Context, row: Row, col: str | None, tokens: list[str], tags: list[Any], strict_bio: bool,
                warnings: list[DataProblem], known: list[str] | None, types: set[str]) -> bool:
    if len(tags) != len(tokens):
        ctx.problems.add(row.line, col, f"{len(tags)} tag(s) for {len(tokens)} token(s)",
                         hint="give every token exactly one tag")
        return False
    if any(isinstance(t, int) and not isinstance(t, bool) for t in tags):
        ctx.problems.group(("int-tags", col), row.line, col, "tags are integers, not tag names such as B-PER",
                           hint="map the ids to their names (the dataset's label list) before loading")
        return False
    ok = True
    prev = "O"
    for i, tag in enumerate(tags):
        if not isinstance(tag, str):
            ctx.problems.add(row.line, col, f"tag {i} is {_kind(tag)}, not a string")
            return False
        tag = tag.strip()
        m = _BIO.match(tag)
        if tag != "O" and m is None:
            if _OTHER_SCHEME.match(tag):
                ctx.problems.group(("scheme", col, tag), row.line, col,
                                   f"only BIO (IOB2) tags are supported; got {tag!r} at token {i}",
                                   hint="convert BIOES/BILOU tags to BIO: S-X/U-X → B-X, E-X/L-X → I-X")
            else:
                ctx.problems.group(("scheme", col, tag), row.line, col,
                                   f"tag {tag!r} at token {i} is not O, B-X or I-X "
                                   "(only BIO (IOB2) tags are supported)")
            ok = False
            prev = tag
            continue
        if m is not None:
            etype = m.group(2)
            types.add(etype)
            if known is not None:
                _check_known(ctx, row.line, col, etype, known, "entity type")
                ok = ok and etype in known
            if m.group(1) == "I" and prev not in (f"B-{etype}", f"I-{etype}"):
                problem = DataProblem(ctx.file, row.line, col,
                                      f"token {i} ({tokens[i]!r}) is tagged {tag!r} but follows {prev!r}",
                                      hint="an entity must start with B-X; if this file uses IOB1, convert it to "
                                           "IOB2, or pass --lenient-bio to read a stray I-X as the start of an "
                                           "entity (as conlleval does)")
                if strict_bio:
                    ctx.problems.add(problem.line, problem.field, problem.message, problem.hint)
                    ok = False
                else:
                    warnings.append(problem)
                    # conlleval's reading: a stray I-X starts an entity; make it explicit so training sees BIO
                    tags[i] = f"B-{etype}"
                    tag = tags[i]
        prev = tag
    if ok:
        tags[:] = [t.strip() for t in tags]
    return ok


# --- qa -----------------------------------------------------------------------------------------------------


def _load_qa(ctx: _Context) -> tuple[list[dict[str, Any]], list[int | None]]:
    question_col = ctx.column("question", required=True)
    context_col = ctx.column("context", required=True)
    id_col = ctx.column("id", required=False)
    answers_col = ctx.column("answers", required=False)
    split_cols: tuple[str, str] | None = None
    if answers_col is None and ctx.columns.answers is None:
        if "answer_text" in ctx.found and "answer_start" in ctx.found:
            split_cols = ("answer_text", "answer_start")
        elif ctx.require_labels:
            message = f"no answers column: expected answers, or answer_text and answer_start ({ctx.found_text()})"
            ctx.problems.add(None, "answers", message,
                             hint=f"name the column with {_flag('answers')} COLUMN")
    if question_col is None or context_col is None:
        return [], []
    examples: list[dict[str, Any]] = []
    lines: list[int | None] = []
    first_line_of_id: dict[str, int | None] = {}
    for n, row in enumerate(ctx.rows):
        question = _text(ctx, row, question_col, "question")
        context = _text(ctx, row, context_col, "context")
        qid = _qa_id(ctx, row, id_col, n)
        if answers_col is None and split_cols is None:
            # No answers in the file: reported once above when they are required, not once per row.
            answers: dict[str, list[Any]] | None = {"text": [], "answer_start": []}
        else:
            answers = _qa_answers(ctx, row, answers_col, split_cols)
        if qid is not None:
            if qid in first_line_of_id:
                ctx.problems.add(row.line, id_col, f"duplicate id {qid!r} (first on line {first_line_of_id[qid]})",
                                 hint="every question needs its own id")
                qid = None
            else:
                first_line_of_id[qid] = row.line
        if question is None or context is None or qid is None or answers is None:
            continue
        span_field = answers_col or (split_cols[1] if split_cols else "answers")
        if not _check_spans(ctx, row, span_field, context, answers):
            continue
        title = row.data.get("title")
        examples.append({"id": qid, "title": title if isinstance(title, str) else None, "question": question,
                         "context": context, "answers": answers})
        lines.append(row.line)
    return examples, lines


def _qa_id(ctx: _Context, row: Row, col: str | None, index: int) -> str | None:
    value = row.data.get(col) if col else None
    if _missing(value):
        # Stable across runs and across cleaning: derived from where the question is in the file.
        return f"line-{row.line}" if row.line is not None else f"row-{index}"
    if isinstance(value, bool) or not isinstance(value, str | int):
        message = f"id must be a string, got {_kind(value)}"
        ctx.problems.group(("type", col, message), row.line, col, message)
        return None
    return str(value)


def _qa_answers(ctx: _Context, row: Row, col: str | None,
                split_cols: tuple[str, str] | None) -> dict[str, list[Any]] | None:
    if split_cols is not None:
        raw: Any = {"text": row.data.get(split_cols[0]), "answer_start": row.data.get(split_cols[1])}
        if _missing(raw["text"]) and _missing(raw["answer_start"]):
            raw = None
        where = split_cols[0]
    else:
        raw = row.data.get(col) if col else None
        where = col or "answers"
    if isinstance(raw, str):
        raw = _parse_json_list(raw) if raw.strip()[:1] in ("[", "{") else raw
    try:
        answers = _answers(raw)
    except ValueError as e:
        ctx.problems.group(("answers-shape", where, str(e)), row.line, where, str(e),
                           hint='use {"text": [...], "answer_start": [...]} or a list of {"text", "answer_start"}')
        return None
    if not answers["text"] and ctx.require_labels:
        ctx.problems.group(("no-answer", where), row.line, where, "the question has no answer",
                           hint="every training question needs an answer span "
                                "(unanswerable questions are not supported)")
        return None
    return answers


def _answers(raw: Any) -> dict[str, list[Any]]:
    if raw is None or raw == "":
        return {"text": [], "answer_start": []}
    if isinstance(raw, dict):
        texts, starts = raw.get("text"), raw.get("answer_start")
        texts = texts if isinstance(texts, list) else [texts]
        starts = starts if isinstance(starts, list) else [starts]
        if len(texts) != len(starts):
            raise ValueError(f"answers have {len(texts)} text(s) but {len(starts)} answer_start(s)")
        pairs = list(zip(texts, starts, strict=True))
    elif isinstance(raw, list):
        if not all(isinstance(a, dict) for a in raw):
            raise ValueError("answers must be objects with text and answer_start")
        pairs = [(a.get("text"), a.get("answer_start")) for a in raw]
    else:
        raise ValueError(f"answers must be an object or a list, got {_kind(raw)}")
    out: dict[str, list[Any]] = {"text": [], "answer_start": []}
    for k, (text, start) in enumerate(pairs):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"answer {k} has no text")
        if isinstance(start, str) and re.fullmatch(r"\s*\d+\s*", start):
            start = int(start)
        if isinstance(start, float) and start.is_integer():
            start = int(start)
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"answer {k} has answer_start {start!r}; it must be a character offset (0 or more)")
        out["text"].append(text)
        out["answer_start"].append(start)
    return out


def _check_spans(ctx: _Context, row: Row, col: str, context: str, answers: dict[str, list[Any]]) -> bool:
    ok = True
    for k, (text, start) in enumerate(zip(answers["text"], answers["answer_start"], strict=True)):
        found = context[start:start + len(text)]
        if found == text:
            continue
        ok = False
        where = _occurrences(context, text)
        if where:
            nearest = min(where, key=lambda o: abs(o - start))
            offsets = ", ".join(map(str, where[:5])) + (", ..." if len(where) > 5 else "")
            hint = f"the answer text occurs at offset(s) {offsets}; set answer_start to {nearest}"
            if _is_byte_offset(context, text, start):
                hint += " (answer_start looks like a byte offset; offsets count characters)"
        else:
            hint = "the answer must be copied exactly from the context"
        ctx.problems.add(row.line, col, f"answer {k} span not in its context: answer_start {start} gives {found!r}, "
                                        f"not {text!r}", hint=hint)
    return ok


def _occurrences(haystack: str, needle: str) -> list[int]:
    out: list[int] = []
    i = haystack.find(needle)
    while i != -1 and len(out) < 50:
        out.append(i)
        i = haystack.find(needle, i + 1)
    return out


def _is_byte_offset(context: str, text: str, start: int) -> bool:
    encoded = context.encode("utf-8")
    return encoded[start:start + len(text.encode("utf-8"))] == text.encode("utf-8")
