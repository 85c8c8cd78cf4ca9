"""Classification data: the reader (columns, labels, multi-label) and the cleaner.

A normalized example is ``{"text": str, "text_pair": str | None, "label": str | list[str] | None}``.

Cleaning normalizes text (and text_pair); merges labels that differ only in case/whitespace into their most
frequent spelling; drops conflicts, exact duplicates and near-duplicates (same label, character 5-gram Jaccard).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from tuneforge.data.cleaning import Cleaner, CleanOptions, CleanReport, list_places, near_duplicates, text_cleaner
from tuneforge.data.dataset import (
    Dataset,
    ReadContext,
    ReadOptions,
    case_variant_warnings,
    check_known,
    column_flag,
    describe_kind,
    is_missing,
    label_too_long,
    open_rows,
    parse_json_list,
    sort_labels,
    text_value,
)

__all__ = ["ALIASES", "ClassificationCleaner", "clean_classification", "read_classification"]

#: auto-detected column names per role, most specific first
ALIASES: dict[str, tuple[str, ...]] = {
    "text": ("text", "sentence", "content", "review", "query", "utterance", "question", "sentence1"),
    "text_pair": ("text_pair", "sentence2", "hypothesis"),
    "label": ("label", "labels", "intent", "category", "class", "sentiment", "target"),
}


def read_classification(path: str | os.PathLike[str], options: ReadOptions, *,
                        task: str = "classification") -> Dataset:
    """Read ``path`` as classification data (options already checked)."""
    ctx = open_rows(path, options)
    # The same spelling rules as the file's labels, so label_set=[0, 1] matches labels 0/1 read from a CSV.
    known = [_scalar_label(x) for x in options.label_set] if options.label_set is not None else None
    examples, lines, labels, multi = _load(ctx, known, options.multi_label, options.label_separator,
                                           options.min_classes)
    return ctx.dataset(task, examples, lines, labels, multi_label=multi)


def _scalar_label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        raise ValueError(f"label must be a class name, got {describe_kind(value)} (regression is not supported)")
    if isinstance(value, str):
        label = value.strip()
        problem = label_too_long(label)
        if problem:
            raise ValueError(problem)
        return label
    raise ValueError(f"label must be a string, got {describe_kind(value)}")


def _multi_label(value: Any, separator: str) -> list[str]:
    if isinstance(value, str) and value.strip().startswith("["):
        value = parse_json_list(value.strip())
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


def _load(ctx: ReadContext, label_set: Sequence[str] | None, multi_label: bool | None, separator: str | None,
          min_classes: int) -> tuple[list[dict[str, Any]], list[int | None], list[str], bool]:
    text_col = ctx.column("text", ALIASES["text"], required=True)
    pair_col = ctx.column("text_pair", ALIASES["text_pair"], required=False)
    label_col = ctx.column("label", ALIASES["label"], required=ctx.require_labels)
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
        text = text_value(ctx, row, text_col, "text")
        pair = text_value(ctx, row, pair_col, "text_pair", optional=True) if pair_col else None
        bad = text is None or (pair_col is not None and pair is None and row.data.get(pair_col) is not None)
        label: str | list[str] | None = None
        if label_col is not None:
            raw = row.data.get(label_col)
            if is_missing(raw) or (isinstance(raw, list) and not multi and not raw):
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
                    hint = (f"check that {column_flag('label')} names the label column"
                            if "longer than" in str(e) else None)
                    ctx.problems.group(("type", label_col, str(e)), row.line, label_col, str(e), hint=hint)
                    bad = True
        if not bad:
            assert text is not None
            examples.append({"text": text, "text_pair": pair, "label": label})
            lines.append(row.line)

    first_line: dict[str, int | None] = {}
    for ex, line in zip(examples, lines, strict=True):
        for lab in _as_list(ex["label"]):
            first_line.setdefault(lab, line)
            if label_set is not None:
                check_known(ctx, line, label_col, lab, label_set, "label")
    distinct = set(first_line)
    if label_col is not None and ctx.require_labels and examples and len(distinct) < min_classes:
        shown = ", ".join(repr(x) for x in sort_labels(distinct)) or "none"
        ctx.problems.add(None, label_col, f"only {len(distinct)} distinct label(s) ({shown}); "
                                          f"training needs at least {min_classes}",
                         hint=f"check that {column_flag('label')} names the label column and that every class has "
                              "examples")
    if label_set is None:
        ctx.warnings += case_variant_warnings(ctx.file, label_col, first_line, "label",
                                              "use one spelling per class (`tuneforge data clean` merges them into "
                                              "the most frequent one)")
    labels = sort_labels(label_set) if label_set is not None else sort_labels(distinct)
    return examples, lines, labels, multi


def _as_list(label: str | list[str] | None) -> list[str]:
    if label is None:
        return []
    return label if isinstance(label, list) else [label]


# --- cleaning -----------------------------------------------------------------------------------------------


def clean_classification(ds: Dataset, options: CleanOptions) -> tuple[Dataset, CleanReport]:
    return ClassificationCleaner(ds, options).run()


class ClassificationCleaner(Cleaner):
    def prepare(self) -> None:
        clean = text_cleaner(self.opts)
        if self.opts.normalize_labels:
            self.renames = _label_renames(self.ds.examples)
        for ex in self.ds.examples:
            text = clean(ex["text"])
            pair = clean(ex["text_pair"]) if ex["text_pair"] is not None else None
            if text != ex["text"] or pair != ex["text_pair"]:
                self.changed += 1
            self.examples.append({"text": text, "text_pair": pair, "label": self._rename(ex["label"])})

    def _rename(self, label: str | list[str] | None) -> str | list[str] | None:
        if not self.renames or label is None:
            return label
        if isinstance(label, str):
            return self.renames.get(label, label)
        out: list[str] = []
        for item in label:
            item = self.renames.get(item, item)
            if item not in out:
                out.append(item)
        return out

    def labels(self) -> list[str]:
        return sort_labels(self.renames.get(label, label) for label in self.ds.labels)

    def filter(self) -> None:
        for i, ex in enumerate(self.examples):
            length = len(ex["text"]) + len(ex["text_pair"] or "")
            if not ex["text"] or ex["text_pair"] == "":
                self.drop(i, "empty", "the text is empty after cleaning")
            elif length < self.opts.min_chars:
                self.drop(i, "too_short", f"{length} character(s), fewer than min_chars={self.opts.min_chars}")
            elif self.opts.max_chars is not None and length > self.opts.max_chars:
                self.drop(i, "too_long", f"{length} characters, more than max_chars={self.opts.max_chars}")
        self.conflicts_and_duplicates(key=lambda ex: (ex["text"], ex["text_pair"]), target=_label_key,
                                      describe=_describe_label_conflict)
        if self.opts.near_dedupe:
            self._near_dedupe()

    def _near_dedupe(self) -> None:
        by_label: defaultdict[Any, list[int]] = defaultdict(list)
        for i, ex in enumerate(self.examples):
            if self.alive[i]:
                by_label[_label_key(ex)].append(i)
        for members in by_label.values():
            texts = [_joined(self.examples[i]) for i in members]
            for j, (i, sim) in near_duplicates(texts, self.opts.near_threshold).items():
                self.drop(members[j], "near_duplicate",
                          f"near-duplicate of {self.line(members[i])} (similarity {sim:.2f})")


def _describe_label_conflict(groups: list[tuple[Any, list[str]]]) -> str:
    return "the same text has different labels: " + "; ".join(
        f"{_show_label(label)} ({list_places(places)})" for label, places in groups[:5])


def _joined(ex: dict[str, Any]) -> str:
    return ex["text"] if ex["text_pair"] is None else ex["text"] + "\n" + ex["text_pair"]


def _label_key(ex: dict[str, Any]) -> Any:
    label = ex["label"]
    return tuple(sorted(label)) if isinstance(label, list) else label


def _show_label(key: Any) -> str:
    return repr(list(key)) if isinstance(key, tuple) else repr(key)


def _label_renames(examples: Sequence[dict[str, Any]]) -> dict[str, str]:
    counts: Counter[str] = Counter()
    for ex in examples:
        label = ex["label"]
        counts.update([label] if isinstance(label, str) else (label or []))
    spellings: defaultdict[str, list[str]] = defaultdict(list)
    for label in counts:  # first-seen order, so ties keep the spelling met first
        spellings[" ".join(label.split()).casefold()].append(label)
    renames: dict[str, str] = {}
    for variants in spellings.values():
        if len(variants) > 1:
            best = max(variants, key=lambda s: counts[s])
            renames.update({v: best for v in variants if v != best})
    return renames
