"""Fairness slices: an evaluation's metrics on each subset of the data (``tuneforge evaluate --slice-by``).

A *slicer* gives every example a slice value; the task's own scoring (``task.score``) is re-run on each slice's
subset of predictions and examples through fairlearn's :class:`~fairlearn.metrics.MetricFrame`, so a slice's figure
is exactly what evaluating that subset alone would give, for every task (classification, multi-label, NER, QA,
generation). Slicers:

- ``length``: the text's length in words (a CJK character counts as one word): ``short`` (at most
  :data:`LENGTH_EDGES`\\[0]), ``medium`` (at most :data:`LENGTH_EDGES`\\[1]), ``long``;
- ``script``: the Unicode script of the text's words (``Latin``, ``Han``, ``Cyrillic`` ...; a CJK character is a
  word; scripts of at least a quarter of the words joined by ``+``, e.g. ``Han+Latin``; ``none`` without letters);
- ``has_number``: ``yes`` when the text holds a digit, else ``no``;
- ``metadata.FIELD``: a field of the record's ``metadata`` object (``metadata.source``; dots go deeper), or a
  column literally named so (a CSV header ``metadata.source``);
- any other name: a column of the data file (``column:NAME`` reads a column whose name is one of the built-ins).

The text of an example is its ``text`` (and ``text_pair``), its joined ``tokens`` (NER), its ``question`` (QA) or
its user messages (generation). Columns are read from the file's raw rows (the task's reader keeps only the
columns it knows), aligned with the examples by line.

Each slice reports the task's scalar metrics with ``n``, its ``gap`` to the overall figure of the headline metric
(:func:`headline_metric`; negative is worse, for a loss too) and ``flagged`` when it is worse than the overall
figure by more than ``min_gap`` (default :data:`DEFAULT_MIN_GAP` in the metric's units, 5 points for the 0-100
scores of QA and generated text). For binary classification the summary also holds fairlearn's demographic parity
difference and equalized-odds difference of each slicer (the positive class: ``1``/``positive``/``pos``/``true``/
``yes`` when one of the two labels is so named, else the second label).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError

__all__ = ["BUILTIN_SLICERS", "DEFAULT_MIN_GAP", "LENGTH_EDGES", "SliceReport", "compute_slices", "example_text",
           "headline_metric", "lower_is_better", "slice_values"]

BUILTIN_SLICERS = ("length", "script", "has_number")
#: word counts: short <= 10 < medium <= 25 < long
LENGTH_EDGES = (10, 25)
DEFAULT_MIN_GAP = 0.05
#: a column with more distinct values than this is refused (a text or id column, not a group)
MAX_SLICE_VALUES = 50
_PERCENT_METRICS = ("exact_match", "f1", "rougeL")  # 0-100 where a task scores them so (QA, generated text)
_POSITIVE = ("1", "positive", "pos", "true", "yes")
_LENGTH_ORDER = ("short", "medium", "long")


# --- what an example says ----------------------------------------------------------------------------------


def example_text(example: dict[str, Any]) -> str:
    """The text the built-in slicers and perturbations look at, by what the example holds (see the module doc)."""
    from tuneforge.tasks.common import join_tokens

    if isinstance(example.get("text"), str):
        pair = example.get("text_pair")
        return example["text"] + (f" {pair}" if isinstance(pair, str) and pair else "")
    if isinstance(example.get("tokens"), list | tuple):
        return join_tokens([str(t) for t in example["tokens"]])[0]
    if isinstance(example.get("question"), str):
        return str(example["question"])
    if isinstance(example.get("messages"), list):
        return "\n".join(str(m.get("content", "")) for m in example["messages"]
                         if isinstance(m, dict) and m.get("role") == "user")
    return ""


def _length(text: str) -> str:
    from tuneforge.tasks.common import split_words

    n = sum(1 for w, _, _ in split_words(text) if any(ch.isalnum() for ch in w))
    return "short" if n <= LENGTH_EDGES[0] else "medium" if n <= LENGTH_EDGES[1] else "long"


def _script_of(ch: str) -> str:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return "Other"
    if name.startswith("CJK") or "IDEOGRAPH" in name:
        return "Han"
    if name.startswith(("HIRAGANA", "KATAKANA")):
        return "Kana"
    first = name.split(" ")[0]
    return {"HANGUL": "Hangul", "FULLWIDTH": "Latin"}.get(first, first.title())


def _script(text: str) -> str:
    from tuneforge.tasks.common import split_words

    # by word (a CJK character is a word), so that "hello 你好 world" is as much Han as Latin
    counts = Counter(_script_of(next(ch for ch in w if ch.isalpha())) for w, _, _ in split_words(text)
                     if any(ch.isalpha() for ch in w))
    total = sum(counts.values())
    if not total:
        return "none"
    return "+".join(s for s, c in counts.most_common() if c >= 0.25 * total)


def _has_number(text: str) -> str:
    return "yes" if any(ch.isdigit() for ch in text) else "no"


_BUILTINS = {"length": _length, "script": _script, "has_number": _has_number}
_DESCRIBE = {
    "length": f"words per text (a CJK character is one word): short ≤ {LENGTH_EDGES[0]} < medium ≤ "
              f"{LENGTH_EDGES[1]} < long",
    "script": "the Unicode script of the text's words (a CJK character is a word; each script of a quarter of "
              "them or more)",
    "has_number": "whether the text holds a digit",
}


# --- slice values ------------------------------------------------------------------------------------------


def _raw_rows(dataset: Any) -> list[dict[str, Any]]:
    """The file's records aligned with ``dataset.examples``: by line where every example has one, else by order."""
    from tuneforge.data.formats import read_rows

    fmt = dataset.format if dataset.format in ("jsonl", "json", "csv", "tsv", "conll", "squad") else None
    rows = read_rows(dataset.path, format=fmt)[1]
    lines = list(dataset.lines)
    by_line = {r.line: r.data for r in rows if r.line is not None}
    if lines and all(x is not None and x in by_line for x in lines) and len(by_line) == len(rows):
        return [by_line[x] for x in lines]
    if len(rows) == len(dataset.examples):
        return [r.data for r in rows]
    raise ConfigError(f"slice_by: cannot line up the records of {dataset.path} with its examples to read a column",
                      hint="slice by a built-in slicer (length, script, has_number), or use a JSON Lines or CSV file")


def _lookup(row: dict[str, Any], name: str) -> tuple[bool, Any]:
    if name in row:
        return True, row[name]
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _as_value(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()):
        return "(missing)"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str | int | float):
        return str(v)
    return None


def slice_values(dataset: Any, slicers: Sequence[str]) -> dict[str, list[str]]:
    """Each slicer's value for every example of ``dataset`` (a :class:`~tuneforge.data.Dataset`), in order.

    Raises:
        ConfigError: every slicer that names no column of the file, a column holding lists or objects, or one
            with more than :data:`MAX_SLICE_VALUES` distinct values (the file's columns are listed).
    """
    texts: list[str] | None = None
    rows: list[dict[str, Any]] | None = None
    out: dict[str, list[str]] = {}
    problems: list[str] = []
    for slicer in dict.fromkeys(slicers):
        if not slicer or not slicer.strip():
            problems.append("slice_by: a slicer name is empty")
            continue
        if slicer in _BUILTINS:
            texts = texts if texts is not None else [example_text(ex) for ex in dataset.examples]
            out[slicer] = [_BUILTINS[slicer](t) for t in texts]
            continue
        column = slicer.removeprefix("column:")
        rows = rows if rows is not None else _raw_rows(dataset)
        found = [_lookup(r, column) for r in rows]
        if not any(ok for ok, _ in found):
            cols = sorted({k for r in rows for k in r})
            meta = sorted({f"metadata.{k}" for r in rows if isinstance(r.get("metadata"), dict) for k in r["metadata"]})
            problems.append(f"slice_by: {slicer!r} is no column of {dataset.path} (its columns: "
                            f"{', '.join(cols + meta) or 'none'}; built-in slicers: {', '.join(BUILTIN_SLICERS)})")
            continue
        values = [_as_value(v) if ok else "(missing)" for ok, v in found]
        if any(v is None for v in values):
            problems.append(f"slice_by: the column {column!r} holds lists or objects; slice by a column of single "
                            "values (or a field of it: metadata.FIELD)")
            continue
        distinct = len(set(values))
        if distinct > MAX_SLICE_VALUES:
            problems.append(f"slice_by: the column {column!r} has {distinct} distinct values (at most "
                            f"{MAX_SLICE_VALUES}); slice by a column that groups the examples")
            continue
        out[slicer] = [str(v) for v in values]
    if problems:
        raise ConfigError(problems, hint="e.g. --slice-by length --slice-by metadata.source")
    return out


# --- metrics per slice -------------------------------------------------------------------------------------


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better (a loss, a perplexity, an error rate)."""
    return any(w in metric for w in ("loss", "perplexity", "error", "ece"))


def headline_metric(task: Any, scores: dict[str, Any]) -> str:
    """The metric slices and perturbations are compared on: the task's ``main_metric`` when it scored it (a loss
    gives way to ``f1`` of generated text when there is one), else the first number of ``scores``."""
    main = getattr(task, "main_metric", None)
    if main in scores and not (lower_is_better(str(main)) and isinstance(scores.get("f1"), float)):
        return str(main)
    for k in ("f1", "accuracy", "exact_match"):
        if isinstance(scores.get(k), int | float):
            return k
    return next(k for k, v in scores.items() if isinstance(v, int | float) and k != "n")


def default_min_gap(metric: str, scores: dict[str, Any]) -> float:
    """:data:`DEFAULT_MIN_GAP`, in points of a 0-100 score (QA and generated text report exact match so)."""
    return DEFAULT_MIN_GAP * 100 if metric in _PERCENT_METRICS and "exact_match" in scores else DEFAULT_MIN_GAP


def _flat(scores: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in scores.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def _positive_label(labels: Sequence[str]) -> str:
    for lab in labels:
        if str(lab).strip().lower() in _POSITIVE:
            return str(lab)
    return str(labels[1])


def _binary(predictions: Sequence[dict[str, Any]], examples: Sequence[dict[str, Any]], labels: Sequence[str],
            multi_label: bool) -> str | None:
    """The positive label when this is binary single-label classification, else None."""
    if multi_label or len(labels) != 2:
        return None
    if not all("label" in p and p["label"] in labels for p in predictions):
        return None
    if not all(isinstance(ex.get("label"), str) and ex["label"] in labels for ex in examples):
        return None
    return _positive_label(labels)


@dataclass
class SliceReport:
    """The slices of one evaluation: ``slices`` (slicer → slice value → metrics with ``n``, ``gap``,
    ``flagged``) and ``summary`` (slicer → headline metric, overall figure, difference between the best and the
    worst slice, flagged slices, fairness differences for binary tasks)."""

    slices: dict[str, dict[str, dict[str, Any]]]
    summary: dict[str, dict[str, Any]]
    metric: str
    min_gap: float
    plot: str = "slices.png"
    _order: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def metrics(self) -> dict[str, Any]:
        """What metrics.json gets: ``slices`` and ``slice_summary``."""
        return {"slices": self.slices, "slice_summary": self.summary}

    def markdown(self, folder: Path) -> list[str]:
        """report.md's section (a table per slicer) and the plot it shows, written into ``folder``."""
        plot_slices(self.slices, self.summary, folder / self.plot, metric=self.metric)
        worse = "above" if lower_is_better(self.metric) else "below"
        md = ["", "## Slices", "",
              f"`{self.metric}` on each slice of the data against the overall figure; ⚠ marks a slice more than "
              f"{_fmt(self.min_gap)} {worse} it (`--slice-min-gap`)."]
        for slicer, table in self.slices.items():
            s = self.summary[slicer]
            md += ["", f"### {slicer}", ""]
            if s.get("description"):
                md += [f"{s['description']}.", ""]
            md += [f"| {slicer} | n | {self.metric} | gap | |", "|---|---|---|---|---|"]
            md += [f"| {value} | {m['n']} | {_fmt(m.get(self.metric))} | {_fmt(m.get('gap'), signed=True)} | "
                   f"{'⚠' if m.get('flagged') else ''} |" for value, m in table.items()]
            line = (f"Overall {_fmt(s['overall'])}; difference between slices {_fmt(s.get('difference'))}, "
                    f"worst slice `{s.get('worst')}`.")
            if "demographic_parity_difference" in s:
                line += (f" Positive class `{s['positive_label']}`: demographic parity difference "
                         f"{_fmt(s['demographic_parity_difference'])}, equalized-odds difference "
                         f"{_fmt(s['equalized_odds_difference'])} (fairlearn).")
            md += ["", line]
        md += ["", f"![{self.metric} per slice]({self.plot})"]
        return md


def _fmt(v: Any, *, signed: bool = False) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:+.4f}" if signed else f"{v:.4f}"
    return str(v)


def compute_slices(task: Any, predictions: Sequence[dict[str, Any]], examples: Sequence[dict[str, Any]],
                   labels: list[str], values: dict[str, list[str]], *, multi_label: bool = False,
                   min_gap: float | None = None) -> SliceReport:
    """Score each slice of ``values`` (slicer → one value per example, from :func:`slice_values`) with the task's
    own scoring through fairlearn's ``MetricFrame``; see the module doc for what is reported."""
    import numpy as np
    import pandas as pd
    from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference

    preds, exs = list(predictions), list(examples)
    cache: dict[tuple[int, ...], dict[str, float]] = {}

    def scores_of(rows: Any) -> dict[str, float]:
        key = tuple(int(i) for i in np.asarray(rows))
        if key not in cache:
            cache[key] = _flat(task.score([preds[i] for i in key], [exs[i] for i in key], labels,
                                          multi_label=multi_label))
        return cache[key]

    index = np.arange(len(exs))
    overall = scores_of(index)
    metric = headline_metric(task, overall)
    gap_min = default_min_gap(metric, overall) if min_gap is None else float(min_gap)
    if gap_min < 0:
        raise ConfigError(f"slice_min_gap: must be 0 or more, got {min_gap}")
    names = [k for k in overall if k != "n"]
    positive = _binary(preds, exs, labels, multi_label)
    sign = -1.0 if lower_is_better(metric) else 1.0

    def metric_fn(name: str) -> Any:
        return lambda y_true, y_pred: scores_of(y_true).get(name, float("nan"))

    slices: dict[str, dict[str, dict[str, Any]]] = {}
    summary: dict[str, dict[str, Any]] = {}
    for slicer, vals in values.items():
        if len(vals) != len(exs):
            raise ValueError(f"slicer {slicer}: {len(vals)} values for {len(exs)} examples")
        features = pd.Series(vals, name=slicer)
        mf = MetricFrame(metrics={n: metric_fn(n) for n in names}, y_true=index, y_pred=index,
                         sensitive_features=features)
        counts = Counter(vals)
        by_group = mf.by_group
        order = (sorted(counts, key=_LENGTH_ORDER.index) if slicer == "length"
                 else sorted(counts, key=lambda v: (-counts[v], v)))
        table: dict[str, dict[str, Any]] = {}
        for value in order:
            row = {n: _num(by_group.loc[value, n]) for n in names}
            m: dict[str, Any] = {k: v for k, v in row.items() if v is not None}
            m["n"] = counts[value]
            mv = m.get(metric)
            m["gap"] = None if mv is None else sign * (mv - overall[metric])
            m["flagged"] = bool(m["gap"] is not None and m["gap"] < -gap_min - 1e-12)
            table[value] = m
        slices[slicer] = table
        diff = _num(mf.difference(method="between_groups")[metric])
        gaps = [(m["gap"], v) for v, m in table.items() if m["gap"] is not None]
        s: dict[str, Any] = {"metric": metric, "overall": overall[metric], "difference": diff,
                             "worst": min(gaps)[1] if gaps else None,
                             "flagged": [v for v, m in table.items() if m["flagged"]], "min_gap": gap_min}
        if slicer in _DESCRIBE:
            s["description"] = _DESCRIBE[slicer]
        if positive is not None:
            y_true = np.array([ex["label"] == positive for ex in exs], dtype=int)
            y_pred = np.array([p["label"] == positive for p in preds], dtype=int)
            s["positive_label"] = positive
            s["demographic_parity_difference"] = _num(demographic_parity_difference(
                y_true, y_pred, sensitive_features=features))
            s["equalized_odds_difference"] = _num(equalized_odds_difference(
                y_true, y_pred, sensitive_features=features))
        summary[slicer] = s
    return SliceReport(slices=slices, summary=summary, metric=metric, min_gap=gap_min)


def plot_slices(slices: dict[str, dict[str, dict[str, Any]]], summary: dict[str, dict[str, Any]], path: Path, *,
                metric: str) -> Path:
    """One panel per slicer: the headline metric of each slice (flagged ones in red, ``n`` on the bar) against a
    dashed line at the overall figure."""
    from tuneforge.evaluation.plots import _cjk_font, _plt

    plt = _plt()
    _cjk_font()
    k = max(1, len(slices))
    fig, axes = plt.subplots(k, 1, figsize=(7, sum(1.2 + 0.35 * len(t) for t in slices.values()) + 0.5 * k),
                             squeeze=False)
    for ax, (slicer, table) in zip(axes[:, 0], slices.items(), strict=False):
        names = list(table)[::-1]
        vals = [table[n].get(metric) or 0.0 for n in names]
        colours = ["#C44E52" if table[n].get("flagged") else "#4C72B0" for n in names]
        bars = ax.barh([re.sub(r"\s+", " ", n)[:40] for n in names], vals, color=colours)
        for bar, n in zip(bars, names, strict=True):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" n={table[n]['n']}", va="center",
                    fontsize=8)
        ax.axvline(summary[slicer]["overall"], linestyle="--", color="grey", linewidth=1, label="overall")
        ax.set_title(slicer, fontsize=10)
        ax.set_xlabel(metric)
        top = max([*vals, summary[slicer]["overall"]]) or 1.0
        ax.set_xlim(0, top * 1.18)
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
