"""Champion / challenger: whether a re-trained model (the challenger) may replace the one in production (the
champion), decided on the model's fixed test set.

The challenger wins when (1) its overall metric (the task's main metric: accuracy for classification, F1 for NER
and QA) is higher than the champion's, and (2) no class, and no slice of the test set (``--slice-by``), loses more
than ``margin`` of its own figure (a class: its recall, the share of its test examples predicted right; NER: the
entity type's F1; a slice: the main metric on it). A class or slice the champion has no figure for (a new class)
cannot drop. A tie is no win: replacing a model costs a deploy and a risk, so the challenger must be better.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.utils.fs import atomic_write_text, storage_errors

__all__ = ["COMPARISON_JSON", "COMPARISON_MD", "Comparison", "compare_metrics", "write_comparison"]

COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"


@dataclass
class Comparison:
    """The comparison of two models' test metrics and the decision it leads to."""

    metric: str
    champion: float | None
    challenger: float
    margin: float
    promote: bool
    reasons: list[str]
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    slices: dict[str, dict[str, Any]] = field(default_factory=dict)
    champion_version: int | None = None
    challenger_version: int | None = None
    parent_version: int | None = None  # the version the challenger was re-trained from
    test_data: str | None = None

    @property
    def decision(self) -> str:
        return "promote" if self.promote else "keep as candidate"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "decision": self.decision}

    def markdown(self) -> str:
        def v(x: float | None) -> str:
            return "—" if x is None else f"{x:.4f}"

        def d(x: float | None) -> str:
            return "—" if x is None else f"{x:+.4f}"

        champ = f"v{self.champion_version}" if self.champion_version is not None else "champion"
        chall = (f"v{self.challenger_version}" if self.challenger_version is not None else
                 f"retrain of v{self.parent_version}" if self.parent_version is not None else "challenger")
        lines = ["# Champion / challenger", "",
                 f"Test data: `{self.test_data}`" if self.test_data else "No test data.", "",
                 f"| {self.metric} | {champ} (champion) | {chall} (challenger) | change |", "|---|---:|---:|---:|",
                 f"| overall | {v(self.champion)} | {v(self.challenger)} | "
                 f"{d(None if self.champion is None else self.challenger - self.champion)} |", "",
                 f"**Decision: {self.decision}.**", ""]
        lines += [f"- {r}" for r in self.reasons]
        if self.per_class:
            lines += ["", f"## Per class ({self._class_metric()}; a drop of more than {self.margin:g} blocks "
                          "promotion)", "", f"| class | {champ} | {chall} | change | |", "|---|---:|---:|---:|---|"]
            for name, row in self.per_class.items():
                mark = "⚠ dropped" if row["dropped"] else ""
                lines.append(f"| {name} | {v(row['champion'])} | {v(row['challenger'])} | {d(row['delta'])} | "
                             f"{mark} |")
        if self.slices:
            lines += ["", f"## Slices ({self.metric})", "", f"| slice | {champ} | {chall} | change | |",
                      "|---|---:|---:|---:|---|"]
            for name, row in self.slices.items():
                mark = "⚠ dropped" if row["dropped"] else ""
                lines.append(f"| {name} | {v(row['champion'])} | {v(row['challenger'])} | {d(row['delta'])} | "
                             f"{mark} |")
        return "\n".join(lines) + "\n"

    def _class_metric(self) -> str:
        first = next(iter(self.per_class.values()), {})
        return str(first.get("metric", "recall"))


def _class_figure(row: Any) -> tuple[str, float] | None:
    if not isinstance(row, dict):
        return None
    for key in ("recall", "f1"):
        if isinstance(row.get(key), int | float):
            return key, float(row[key])
    return None


def _per_class(champion: dict[str, Any], challenger: dict[str, Any], margin: float) -> dict[str, dict[str, Any]]:
    old, new = champion.get("per_class") or {}, challenger.get("per_class") or {}
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(old) | set(new)):
        a, b = _class_figure(old.get(name)), _class_figure(new.get(name))
        if b is None and a is None:
            continue
        support = (new.get(name) or old.get(name) or {}).get("support")
        if isinstance(support, int) and support == 0:
            continue  # no test example of the class: nothing measured
        metric = (b or a or ("recall", 0.0))[0]
        before = a[1] if a else None
        after = b[1] if b else 0.0  # a class the challenger no longer predicts has lost it all
        delta = None if before is None else after - before
        out[name] = {"metric": metric, "champion": before, "challenger": after, "delta": delta,
                     "support": support, "dropped": delta is not None and delta < -margin - 1e-12}
    return out


def _slices(champion: dict[str, Any], challenger: dict[str, Any], metric: str,
            margin: float) -> dict[str, dict[str, Any]]:
    old, new = champion.get("slices") or {}, challenger.get("slices") or {}
    out: dict[str, dict[str, Any]] = {}
    for slicer in sorted(set(old) & set(new)):
        for value in sorted(set(old[slicer]) | set(new[slicer])):
            a = (old[slicer].get(value) or {}).get(metric)
            b = (new[slicer].get(value) or {}).get(metric)
            if not isinstance(b, int | float):
                continue
            delta = float(b) - float(a) if isinstance(a, int | float) else None
            out[f"{slicer}={value}"] = {"champion": a, "challenger": float(b), "delta": delta,
                                        "dropped": delta is not None and delta < -margin - 1e-12}
    return out


def compare_metrics(champion: dict[str, Any] | None, challenger: dict[str, Any], *, metric: str,
                    margin: float = 0.02, greater_is_better: bool = True) -> Comparison:
    """Decide champion / challenger from their test metrics (``evaluate``'s metrics.json: the flat ``metric``,
    ``per_class`` and, when sliced, ``slices``). No champion (nothing in production yet): the challenger is
    promoted when it has a score."""
    if margin < 0:
        raise ValueError(f"margin: must be 0 or more, not {margin}")
    new = challenger.get(metric)
    if not isinstance(new, int | float):
        raise ValueError(f"the challenger's metrics have no {metric}")
    sign = 1.0 if greater_is_better else -1.0
    if champion is None:
        return Comparison(metric, None, float(new), margin, True,
                          ["nothing is in production yet: the challenger is the first champion"])
    old = champion.get(metric)
    if not isinstance(old, int | float):
        raise ValueError(f"the champion's metrics have no {metric}")
    per_class = _per_class(champion, challenger, margin)
    slices = _slices(champion, challenger, metric, margin)
    reasons: list[str] = []
    better = sign * (float(new) - float(old)) > 1e-12
    if better:
        reasons.append(f"{metric} {float(new):.4f} against {float(old):.4f}: better by {abs(new - old):.4f}")
    else:
        reasons.append(f"{metric} {float(new):.4f} against {float(old):.4f}: not better than the champion")
    dropped = [n for n, r in per_class.items() if r["dropped"]]
    if dropped:
        shown = ", ".join(f"{n} ({per_class[n]['delta']:+.4f})" for n in dropped[:10])
        reasons.append(f"{len(dropped)} class{'es' if len(dropped) != 1 else ''} dropped by more than the margin "
                       f"{margin:g}: {shown}{' ...' if len(dropped) > 10 else ''}")
    elif per_class:
        reasons.append(f"no class dropped by more than the margin {margin:g}")
    lost = [n for n, r in slices.items() if r["dropped"]]
    if lost:
        reasons.append(f"{len(lost)} slice(s) dropped by more than the margin {margin:g}: "
                       + ", ".join(f"{n} ({slices[n]['delta']:+.4f})" for n in lost[:10]))
    promote = better and not dropped and not lost
    return Comparison(metric, float(old), float(new), margin, promote, reasons, per_class=per_class, slices=slices)


def write_comparison(comparison: Comparison, folder: Path) -> tuple[Path, Path]:
    """``comparison.json`` and ``comparison.md`` in ``folder`` (each written to a temporary name and renamed)."""
    folder = Path(folder)
    js, md = folder / COMPARISON_JSON, folder / COMPARISON_MD
    with storage_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(js, json.dumps(comparison.to_json(), indent=2, ensure_ascii=False) + "\n")
        atomic_write_text(md, comparison.markdown())
    return js, md
