"""Extractive QA data: the reader (the Hugging Face SQuAD layout, or answer_text/answer_start columns) and the
cleaner.

A normalized example is ``{"id": str, "title": str | None, "question": str, "context": str,
"answers": {"text": list[str], "answer_start": list[int]}}`` (the Hugging Face SQuAD layout plus its title).

With ``repair_offsets`` (what ``tuneforge train`` and ``data check`` do unless ``--strict``), an answer whose
``answer_start`` is a little off (counted in UTF-16 units or bytes, or shifted by a few characters) is moved to
where its text is (:mod:`tuneforge.tasks.qa.offsets`), and an answer that cannot be located is dropped; both are
reported as warnings naming the file, line and field. Without it, such an answer is an error.

Cleaning normalizes only the question. The context is never changed, because answer offsets point into it;
identical (question, context) pairs are deduplicated.
"""

from __future__ import annotations

import os
import re
from typing import Any

from tuneforge.data.cleaning import Cleaner, CleanOptions, CleanReport, text_cleaner
from tuneforge.data.dataset import (
    Dataset,
    ReadContext,
    ReadOptions,
    column_flag,
    describe_kind,
    is_blank,
    is_missing,
    open_rows,
    parse_json_list,
    text_value,
)
from tuneforge.data.formats import Row
from tuneforge.errors import DataProblem
from tuneforge.tasks.qa.offsets import REASONS, locate_answer

__all__ = ["ALIASES", "QaCleaner", "clean_qa", "read_qa"]

#: auto-detected column names per role, most specific first
ALIASES: dict[str, tuple[str, ...]] = {
    "question": ("question",),
    "context": ("context", "passage", "paragraph"),
    "answers": ("answers",),
    "id": ("id", "qid", "question_id"),
}


def read_qa(path: str | os.PathLike[str], options: ReadOptions, *, task: str = "qa") -> Dataset:
    """Read ``path`` as extractive QA data (options already checked)."""
    ctx = open_rows(path, options)
    examples, lines = _load(ctx)
    if ctx.options.repair_offsets and not examples and ctx.rows and ctx.require_labels:
        # nothing left to train on: the answers that could not be located are the errors
        dropped = [w for w in ctx.warnings if w.message.startswith("answer ") and " dropped" in w.message]
        for w in dropped[:_Repairs.SHOWN] or [DataProblem(ctx.file, None, "answers", "no answer could be located")]:
            ctx.problems.add(w.line, w.field, w.message.replace(" dropped:", ":", 1),
                             hint="answers must be copied exactly from their contexts")
    return ctx.dataset(task, examples, lines, [])


def _load(ctx: ReadContext) -> tuple[list[dict[str, Any]], list[int | None]]:
    question_col = ctx.column("question", ALIASES["question"], required=True)
    context_col = ctx.column("context", ALIASES["context"], required=True)
    id_col = ctx.column("id", ALIASES["id"], required=False)
    answers_col = ctx.column("answers", ALIASES["answers"], required=False)
    split_cols: tuple[str, str] | None = None
    if answers_col is None and ctx.columns.answers is None:
        if "answer_text" in ctx.found and "answer_start" in ctx.found:
            split_cols = ("answer_text", "answer_start")
        elif ctx.require_labels:
            message = f"no answers column: expected answers, or answer_text and answer_start ({ctx.found_text()})"
            ctx.problems.add(None, "answers", message,
                             hint=f"name the column with {column_flag('answers')} COLUMN")
    if question_col is None or context_col is None:
        return [], []
    examples: list[dict[str, Any]] = []
    lines: list[int | None] = []
    repairs = _Repairs(ctx.file) if ctx.options.repair_offsets else None
    first_line_of_id: dict[str, int | None] = {}
    for n, row in enumerate(ctx.rows):
        question = text_value(ctx, row, question_col, "question")
        context = text_value(ctx, row, context_col, "context")
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
        if repairs is not None:
            answers = repairs.repair(row, span_field, context, answers)
            if not answers["text"] and ctx.require_labels:
                continue
        elif not _check_spans(ctx, row, span_field, context, answers):
            continue
        title = row.data.get("title")
        examples.append({"id": qid, "title": title if isinstance(title, str) else None, "question": question,
                         "context": context, "answers": answers})
        lines.append(row.line)
    if repairs is not None:
        ctx.warnings += repairs.report()
    return examples, lines


class _Repairs:
    """Repairs answer offsets row by row and reports them: one warning per kind of repair (with its lines) and
    one per dropped answer (file, line, field), the latter grouped past :attr:`SHOWN` of them."""

    SHOWN = 50

    def __init__(self, file: str) -> None:
        self.file = file
        self.repaired: dict[tuple[str, str], list[tuple[int | None, str]]] = {}
        self.dropped: list[DataProblem] = []

    def repair(self, row: Row, field: str, context: str, answers: dict[str, list[Any]]) -> dict[str, list[Any]]:
        kept: dict[str, list[Any]] = {"text": [], "answer_start": []}
        for k, (text, start) in enumerate(zip(answers["text"], answers["answer_start"], strict=True)):
            found = locate_answer(context, text, start)
            if found.start is None:
                why = f"({found.detail})" if found.detail else "(the text is not in the context)"
                self.dropped.append(DataProblem(
                    self.file, row.line, field, f"answer {k} dropped: {text!r} is not at answer_start {start} "
                                                f"and could not be located nearby {why}",
                    "copy the answer exactly from the context, or fix answer_start"))
                continue
            if found.reason is not None:
                self.repaired.setdefault((found.reason, field), []).append((row.line, f"{text!r} {found.detail}"))
            kept["text"].append(text)
            kept["answer_start"].append(found.start)
        return kept

    def report(self) -> list[DataProblem]:
        out = []
        for (reason, field), where in self.repaired.items():
            shown = ", ".join(f"line {ln}: {d}" if ln is not None else d for ln, d in where[:5])
            more = f", and {len(where) - 5} more" if len(where) > 5 else ""
            out.append(DataProblem(self.file, where[0][0], field,
                                   f"repaired {len(where)} answer offset(s): {REASONS[reason]} ({shown}{more})",
                                   "--strict refuses such offsets instead"))
        out += self.dropped[:self.SHOWN]
        rest = self.dropped[self.SHOWN:]
        if rest:
            lines = ", ".join(str(p.line) for p in rest[:20] if p.line is not None)
            out.append(DataProblem(self.file, rest[0].line, rest[0].field,
                                   f"{len(rest)} more answer(s) dropped, not located in their contexts "
                                   f"(lines {lines}{', ...' if len(rest) > 20 else ''})"))
        return out


def _qa_id(ctx: ReadContext, row: Row, col: str | None, index: int) -> str | None:
    value = row.data.get(col) if col else None
    if is_missing(value):
        # Stable across runs and across cleaning: derived from where the question is in the file.
        return f"line-{row.line}" if row.line is not None else f"row-{index}"
    if isinstance(value, bool) or not isinstance(value, str | int):
        message = f"id must be a string, got {describe_kind(value)}"
        ctx.problems.group(("type", col, message), row.line, col, message)
        return None
    return str(value)


def _qa_answers(ctx: ReadContext, row: Row, col: str | None,
                split_cols: tuple[str, str] | None) -> dict[str, list[Any]] | None:
    if split_cols is not None:
        raw: Any = {"text": row.data.get(split_cols[0]), "answer_start": row.data.get(split_cols[1])}
        if is_missing(raw["text"]) and is_missing(raw["answer_start"]):
            raw = None
        where = split_cols[0]
    else:
        raw = row.data.get(col) if col else None
        where = col or "answers"
    if isinstance(raw, str):
        raw = parse_json_list(raw) if raw.strip()[:1] in ("[", "{") else raw
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
        raise ValueError(f"answers must be an object or a list, got {describe_kind(raw)}")
    out: dict[str, list[Any]] = {"text": [], "answer_start": []}
    for k, (text, start) in enumerate(pairs):
        if not isinstance(text, str) or is_blank(text):
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


def _check_spans(ctx: ReadContext, row: Row, col: str, context: str, answers: dict[str, list[Any]]) -> bool:
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
            elif locate_answer(context, text, start).reason == "utf16":
                hint += " (answer_start looks like it counts UTF-16 units; offsets count characters)"
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


# --- cleaning -----------------------------------------------------------------------------------------------


def clean_qa(ds: Dataset, options: CleanOptions) -> tuple[Dataset, CleanReport]:
    return QaCleaner(ds, options).run()


class QaCleaner(Cleaner):
    def prepare(self) -> None:
        clean = text_cleaner(self.opts)
        for ex in self.ds.examples:
            question = clean(ex["question"])
            if question != ex["question"]:
                self.changed += 1
            # The context and answers are shared, not copied: they are never modified.
            self.examples.append({**ex, "question": question})

    def filter(self) -> None:
        for i, ex in enumerate(self.examples):
            if not ex["question"]:
                self.drop(i, "empty", "the question is empty after cleaning")
        if self.opts.dedupe:
            first: dict[tuple[str, str], int] = {}
            for i, ex in enumerate(self.examples):
                if not self.alive[i]:
                    continue
                k = (ex["question"], ex["context"])
                if k in first:
                    self.drop(i, "duplicate", f"same question and context as {self.line(first[k])}")
                else:
                    first[k] = i
