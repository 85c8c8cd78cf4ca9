"""What an evaluation report shows of generated replies: tables of prompt / reference / generated.

:func:`reply_tables` gives ``report.md`` two tables, the worst replies (lowest token F1 against the reference,
then the file order) and a fixed sample spread over the file, so a reader sees both how the model fails and what
it usually writes. Long or multi-line texts are shortened to fit a markdown table cell.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from tuneforge.tasks.generation.metrics import text_scores

__all__ = ["WORST_SHOWN", "SAMPLE_SHOWN", "cell", "reply_tables"]

#: a conversation -> (its prompt, its reference reply or None)
SplitReference = Callable[[Sequence[dict[str, Any]]], tuple[list[dict[str, Any]], str | None]]
WORST_SHOWN = 10
SAMPLE_SHOWN = 10
_CELL_CHARS = 300


def cell(text: str, limit: int = _CELL_CHARS) -> str:
    """``text`` as one markdown table cell: pipes escaped, line breaks as ``<br>``, cut at ``limit`` characters."""
    flat = " ".join(str(text).split("\n")).strip()
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return flat.replace("\\", "\\\\").replace("|", "\\|") or "(empty)"


def _table(rows: list[tuple[float, float, int, str, str, str]], lines: Sequence[int | None]) -> list[str]:
    md = ["| line | prompt | reference | generated | F1 |", "|---|---|---|---|---|"]
    for f1, _, i, prompt, ref, text in rows:
        line = lines[i] if i < len(lines) else None
        md.append(f"| {line if line is not None else ''} | {cell(prompt)} | {cell(ref)} | {cell(text)} | {f1:.0f} |")
    return md


def reply_tables(predictions: Sequence[dict[str, Any]], examples: Sequence[dict[str, Any]],
                 lines: Sequence[int | None], *, split_reference: SplitReference, worst: int = WORST_SHOWN,
                 sample: int = SAMPLE_SHOWN, seed: int = 0) -> list[str]:
    """Markdown sections for ``report.md``: how many generated replies differ from their reference, the
    ``worst`` of them and a ``sample`` of all (the same examples for the same file and ``seed``).
    ``split_reference`` splits a conversation into its prompt and reference reply (the task's). Examples without
    a reference reply, or that are preference pairs, have no row; no such examples, no sections."""
    rows: list[tuple[float, float, int, str, str, str]] = []
    for i, (pred, ex) in enumerate(zip(predictions, examples, strict=True)):
        if "messages" not in ex or "text" not in pred:
            continue
        prompt, ref = split_reference(ex["messages"])
        if ref is None:
            continue
        scores = text_scores([pred["text"]], [ref])
        asked = next((m["content"] for m in reversed(prompt) if m.get("role") == "user"), "")
        rows.append((scores["f1"], scores["exact_match"], i, str(asked), ref, str(pred["text"])))
    if not rows:
        return []
    wrong = [r for r in rows if r[1] < 100.0]
    md = ["", f"## Replies ({len(wrong)} of {len(rows)} differ from the reference)", "",
          "Prompt (the last user message), reference reply and generated reply; F1 is token F1 (0-100) against "
          "the reference. Line numbers refer to the data file."]
    if wrong:
        md += ["", f"### The worst {min(worst, len(wrong))} (lowest F1)", ""]
        md += _table(sorted(wrong, key=lambda r: (r[0], r[2]))[:worst], lines)
    picked = sorted(random.Random(seed).sample(range(len(rows)), min(sample, len(rows))))
    md += ["", f"### A sample of {len(picked)}", ""]
    md += _table([rows[k] for k in picked], lines)
    return md
