"""NER data: the reader (tokens and BIO / IOB2 tags) and the cleaner.

A normalized example is ``{"tokens": list[str], "tags": list[str] | None}``.

Cleaning normalizes each token on its own, so tokens are never split or merged and tags stay aligned; identical
sentences are deduplicated and sentences whose tokens got different tags dropped as conflicts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from tuneforge.data.cleaning import Cleaner, CleanOptions, CleanReport, list_places, token_cleaner
from tuneforge.data.dataset import (
    Dataset,
    ReadContext,
    ReadOptions,
    case_variant_warnings,
    check_known,
    describe_kind,
    is_blank,
    label_too_long,
    open_rows,
    parse_json_list,
    sort_labels,
)
from tuneforge.data.formats import Row
from tuneforge.errors import DataProblem

__all__ = ["ALIASES", "NerCleaner", "clean_ner", "read_ner"]

#: auto-detected column names per role, most specific first
ALIASES: dict[str, tuple[str, ...]] = {
    "tokens": ("tokens", "words"),
    "tags": ("tags", "ner_tags", "labels"),
}
_BIO = re.compile(r"^([BI])-(.+)$")
_OTHER_SCHEME = re.compile(r"^([SEUL])-(.+)$")


def read_ner(path: str | os.PathLike[str], options: ReadOptions, *, task: str = "ner") -> Dataset:
    """Read ``path`` as NER data (options already checked)."""
    ctx = open_rows(path, options)
    tokens_col = ctx.column("tokens", ALIASES["tokens"], required=True)
    tags_col = ctx.column("tags", ALIASES["tags"], required=ctx.require_labels)
    if tokens_col is None:
        return ctx.dataset(task, [], [], [])
    known = _entity_types(options.label_set) if options.label_set is not None else None
    examples: list[dict[str, Any]] = []
    lines: list[int | None] = []
    first_line: dict[str, int | None] = {}
    for row in ctx.rows:
        tokens = _sequence(ctx, row, tokens_col, "tokens", optional=False)
        tags = _sequence(ctx, row, tags_col, "tags", optional=not ctx.require_labels) if tags_col else None
        ok = tokens is not None and _check_tokens(ctx, row, tokens_col, tokens)
        if tags_col is not None and tags is None and (ctx.require_labels or row.data.get(tags_col) is not None):
            ok = False
        if ok and tags is not None:
            assert tokens is not None
            ok = _check_tags(ctx, row, tags_col, tokens, tags, known, first_line)
        if ok:
            examples.append({"tokens": tokens, "tags": tags})
            lines.append(row.line)
    if known is None:
        ctx.warnings += case_variant_warnings(ctx.file, tags_col, first_line, "entity type",
                                              "use one spelling per entity type")
    labels = known if known is not None else sort_labels(first_line)
    return ctx.dataset(task, examples, lines, labels)


def _sequence(ctx: ReadContext, row: Row, col: str, role: str, *, optional: bool) -> list[Any] | None:
    value = row.data.get(col)
    if value is None:
        if not optional:
            ctx.problems.group(("missing", col), row.line, col, f"no value for {role} (column {col!r})")
        return None
    if isinstance(value, str):
        # CSV/TSV cells: a JSON list, or items separated by spaces.
        parsed = parse_json_list(value.strip()) if value.strip().startswith("[") else value.split()
        value = parsed
    if not isinstance(value, list):
        message = f"{role} must be a list of strings, got {describe_kind(value)}"
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


def _check_tokens(ctx: ReadContext, row: Row, col: str, tokens: list[Any]) -> bool:
    if not tokens:
        ctx.problems.group(("empty", col), row.line, col, "empty sentence (no tokens)")
        return False
    for i, tok in enumerate(tokens):
        if not isinstance(tok, str):
            ctx.problems.add(row.line, col, f"token {i} is {describe_kind(tok)}, not a string")
            return False
        if is_blank(tok):
            ctx.problems.add(row.line, col, f"token {i} is empty or whitespace",
                             hint="drop empty tokens (and their tags) from the sentence")
            return False
    return True


def _check_tags(ctx: ReadContext, row: Row, col: str | None, tokens: list[str], tags: list[Any],
                known: list[str] | None, first_line: dict[str, int | None]) -> bool:
    if len(tags) != len(tokens):
        ctx.problems.add(row.line, col, f"{len(tags)} tag(s) for {len(tokens)} token(s)",
                         hint="give every token exactly one tag")
        return False
    if any(isinstance(t, int) and not isinstance(t, bool) for t in tags):
        ctx.problems.group(("int-tags", col), row.line, col, "tags are integers, not tag names such as B-PER",
                           hint="map the ids to their names (the dataset's label list) before loading")
        return False
    strict_bio = ctx.options.strict_bio
    ok = True
    prev = "O"
    for i, tag in enumerate(tags):
        if not isinstance(tag, str):
            ctx.problems.add(row.line, col, f"tag {i} is {describe_kind(tag)}, not a string")
            return False
        tag = tag.strip()
        too_long = label_too_long(tag)
        if too_long:
            ctx.problems.group(("too-long", col), row.line, col, f"tag {i} is {too_long}",
                               hint="check that --tags-column names the tags column")
            return False
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
            first_line.setdefault(etype, row.line)
            if known is not None:
                check_known(ctx, row.line, col, etype, known, "entity type")
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
                    ctx.warnings.append(problem)
                    # conlleval's reading: a stray I-X starts an entity; make it explicit so training sees BIO
                    tags[i] = f"B-{etype}"
                    tag = tags[i]
        prev = tag
    if ok:
        tags[:] = [t.strip() for t in tags]
    return ok


# --- cleaning -----------------------------------------------------------------------------------------------


def clean_ner(ds: Dataset, options: CleanOptions) -> tuple[Dataset, CleanReport]:
    return NerCleaner(ds, options).run()


class NerCleaner(Cleaner):
    def prepare(self) -> None:
        clean = token_cleaner(self.opts)
        self.emptied: dict[int, int] = {}
        for i, ex in enumerate(self.ds.examples):
            tokens = [clean(t) for t in ex["tokens"]]
            if tokens != ex["tokens"]:
                self.changed += 1
            empty = next((k for k, t in enumerate(tokens) if not t), None)
            if empty is not None:
                self.emptied[i] = empty
            tags = list(ex["tags"]) if ex["tags"] is not None else None
            self.examples.append({"tokens": tokens, "tags": tags})

    def filter(self) -> None:
        for i, k in self.emptied.items():
            self.drop(i, "empty", f"token {k} is empty after normalization")
        self.conflicts_and_duplicates(key=lambda ex: tuple(ex["tokens"]),
                                      target=lambda ex: tuple(ex["tags"]) if ex["tags"] is not None else None,
                                      describe=_describe_tag_conflict)


def _describe_tag_conflict(groups: list[tuple[Any, list[str]]]) -> str:
    (a, where_a), (b, where_b) = groups[0], groups[1]
    k = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
    return (f"the same sentence is tagged differently ({list_places(where_a)} vs {list_places(where_b)}; "
            f"first at token {k}: {a[k]!r} vs {b[k]!r})")
