"""Robustness: the test set re-scored under perturbations of its text (``tuneforge evaluate --robustness``).

Each perturbation rewrites the text of every example it applies to (classification: ``text`` and ``text_pair``;
NER: each token, a punctuation token tagged ``O`` that would become empty is dropped with its tag; QA: the
question, as the context carries the answer spans; generation: the user messages), the model predicts the changed
examples again (an unchanged example keeps its prediction), and the task's own scoring gives the headline metric
(:func:`~tuneforge.evaluation.slices.headline_metric`) on the whole set. ``drop`` is how much worse it got
(original − perturbed; perturbed − original for a loss), on every example and on the changed ones alone.

Perturbations (each one seeded per example: the same seed gives the same text):

- ``typos``: a word of 4+ letters (not CJK) gets, with probability 0.2 and at least once per text, two
  adjacent inner letters swapped or an inner letter dropped;
- ``uppercase`` / ``lowercase``: the whole text;
- ``no_punctuation``: every Unicode punctuation mark removed;
- ``synonyms``: a word of the small built-in table :data:`SYNONYMS` (English, plus a few Chinese words), with
  probability 0.5 and at least once per text, replaced by a synonym (WordNet is not used: its data is not
  installed here);
- Chinese texts only: ``traditional`` (simplified → traditional) and ``simplified`` (traditional → simplified),
  through OpenCC (``opencc``) or ``zhconv`` when one is installed, else reported as skipped with the reason;
  ``full_width`` (ASCII letters, digits, punctuation and spaces → their full-width forms) and ``half_width``
  (full-width forms → ASCII).
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.evaluation.slices import headline_metric, lower_is_better

__all__ = ["PERTURBATIONS", "SYNONYMS", "RobustnessReport", "chinese_converter", "perturb_example",
           "perturb_text", "robustness_report"]

TYPO_RATE = 0.2
SYNONYM_RATE = 0.5
MAX_SHOWN = 3  # changed predictions shown per perturbation in report.md

#: a small table of meaning-preserving swaps (both directions are listed where they hold)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "good": ("fine", "nice"), "great": ("excellent", "wonderful"), "bad": ("poor", "lousy"),
    "awful": ("terrible", "dreadful"), "terrible": ("awful", "horrible"), "horrible": ("terrible", "awful"),
    "excellent": ("superb", "great"), "wonderful": ("marvelous", "great"), "beautiful": ("lovely", "gorgeous"),
    "funny": ("amusing", "hilarious"), "boring": ("dull", "tedious"), "dull": ("boring", "tedious"),
    "movie": ("film",), "film": ("movie",), "story": ("tale", "plot"), "smart": ("clever", "intelligent"),
    "stupid": ("dumb", "foolish"), "big": ("large", "huge"), "small": ("little", "tiny"), "fast": ("quick",),
    "quick": ("fast",), "slow": ("sluggish",), "happy": ("glad", "pleased"), "sad": ("unhappy", "gloomy"),
    "love": ("adore",), "like": ("enjoy",), "hate": ("detest", "loathe"), "begin": ("start",), "start": ("begin",),
    "end": ("finish",), "buy": ("purchase",), "purchase": ("buy",), "help": ("assist",), "need": ("require",),
    "want": ("wish",), "problem": ("issue",), "issue": ("problem",), "money": ("cash", "funds"),
    "refund": ("reimbursement",), "order": ("purchase",), "card": ("bank card",), "account": ("profile",),
    "cancel": ("call off",), "change": ("alter", "modify"), "show": ("display",), "actor": ("performer",),
    "actors": ("performers",), "movies": ("films",), "films": ("movies",), "characters": ("roles",),
    "interesting": ("intriguing", "engaging"), "entertaining": ("enjoyable", "fun"), "fun": ("enjoyable",),
    "enjoyable": ("pleasant", "entertaining"), "strong": ("powerful",), "weak": ("feeble", "flimsy"),
    "mess": ("shambles",), "masterpiece": ("classic",), "charming": ("delightful",), "silly": ("foolish",),
    "often": ("frequently",), "very": ("really", "extremely"), "really": ("truly",), "quite": ("rather",),
    "almost": ("nearly",), "also": ("too",), "however": ("yet",), "difficult": ("hard",), "hard": ("difficult",),
    "easy": ("simple",), "simple": ("plain",), "new": ("fresh",), "old": ("aged",), "worst": ("poorest",),
    "best": ("finest",), "perfect": ("flawless",), "moving": ("touching",), "touching": ("moving",),
    "thoughtful": ("considerate",), "tired": ("weary",), "clever": ("smart",), "powerful": ("strong",),
    # Chinese: replaced where they occur in the text
    "非常": ("十分", "特别"), "喜欢": ("喜爱",), "电影": ("影片",), "漂亮": ("美丽",), "快速": ("迅速",),
    "问题": ("疑问",), "帮助": ("协助",), "购买": ("采购",), "取消": ("撤销",), "开始": ("起始",),
    "糟糕": ("差劲",), "有趣": ("有意思",), "无聊": ("乏味",), "高兴": ("开心",), "难过": ("伤心",),
}

_TOKEN_SEP = "\ue000"  # joins NER tokens: a private-use character, no letter, space or punctuation
_WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_ZH_KEYS = sorted((k for k in SYNONYMS if not k.isascii()), key=len, reverse=True)


def _has_cjk(text: str) -> bool:
    from tuneforge.tasks.common import is_cjk

    return any(is_cjk(ch) for ch in text)


def _typo_word(w: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(w) - 2) if len(w) > 3 else 1
    if rng.random() < 0.5 and w[i] != w[i + 1]:
        return w[:i] + w[i + 1] + w[i] + w[i + 2:]
    return w[:i] + w[i + 1:]


def _pick(n: int, rate: float, rng: random.Random) -> set[int]:
    """Each of ``n`` candidates with probability ``rate``, at least one when there is one."""
    chosen = {i for i in range(n) if rng.random() < rate}
    return chosen or ({rng.randrange(n)} if n else set())


def _swap_words(text: str, rng: random.Random, eligible: Callable[[str], bool],
                swap: Callable[[str, random.Random], str], rate: float) -> str:
    """``text`` with some of its eligible words (letters, no CJK) replaced by ``swap``."""
    matches = [m for m in _WORD_RE.finditer(text) if eligible(m.group()) and not _has_cjk(m.group())]
    chosen = _pick(len(matches), rate, rng)
    out, pos = [], 0
    for k, m in enumerate(matches):
        if k in chosen:
            out += [text[pos:m.start()], swap(m.group(), rng)]
            pos = m.end()
    return "".join(out) + text[pos:]


def _typos(text: str, rng: random.Random) -> str:
    return _swap_words(text, rng, lambda w: len(w) >= 4, _typo_word, TYPO_RATE)


def _synonym(word: str, rng: random.Random) -> str:
    new = rng.choice(SYNONYMS[word.lower()])
    if word.isupper() and len(word) > 1:
        return new.upper()
    return new[:1].upper() + new[1:] if word[:1].isupper() else new


def _synonyms(text: str, rng: random.Random) -> str:
    text = _swap_words(text, rng, lambda w: w.lower() in SYNONYMS, _synonym, SYNONYM_RATE)
    if not _has_cjk(text):
        return text
    found = [(m.start(), m.end(), k) for k in _ZH_KEYS for m in re.finditer(re.escape(k), text)]
    found.sort()
    spans: list[tuple[int, int, str]] = []
    for s, e, k in found:  # keep non-overlapping occurrences, the earliest (then longest) first
        if not spans or s >= spans[-1][1]:
            spans.append((s, e, k))
    chosen = _pick(len(spans), SYNONYM_RATE, rng)
    out, pos = [], 0
    for j, (s, e, k) in enumerate(spans):
        if j in chosen:
            out += [text[pos:s], rng.choice(SYNONYMS[k])]
            pos = e
    return "".join(out) + text[pos:]


def _no_punctuation(text: str, rng: random.Random) -> str:
    stripped = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return re.sub(r"[ \t]{2,}", " ", stripped).strip() if stripped != text else text


def _full_width(text: str, rng: random.Random) -> str:
    if not _has_cjk(text):
        return text
    return "".join("\u3000" if ch == " " else chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


def _half_width(text: str, rng: random.Random) -> str:
    if not _has_cjk(text):
        return text
    return "".join(" " if ch == "\u3000" else chr(ord(ch) - 0xFEE0) if "\uff01" <= ch <= "\uff5e" else ch
                   for ch in text)


def chinese_converter(target: str) -> tuple[Callable[[str], str] | None, str]:
    """A simplified ↔ traditional converter (``target``: ``traditional`` or ``simplified``) from OpenCC or zhconv,
    and its name; ``(None, reason)`` when neither is installed."""
    try:
        import opencc  # type: ignore[import-not-found]

        conv = opencc.OpenCC("s2t" if target == "traditional" else "t2s")
        return conv.convert, "opencc"
    except ImportError:
        pass
    except Exception as e:  # noqa: BLE001 - a broken install: say so rather than fail the evaluation
        return None, f"opencc failed to load ({e})"
    try:
        import zhconv  # type: ignore[import-not-found]

        locale = "zh-hant" if target == "traditional" else "zh-hans"
        return (lambda s: str(zhconv.convert(s, locale))), "zhconv"
    except ImportError:
        return None, "no simplified/traditional converter is installed (opencc or zhconv)"


def _converted(target: str) -> Callable[[str, random.Random], str] | str:
    conv, why = chinese_converter(target)
    if conv is None:
        return why
    convert = conv
    return lambda text, rng: convert(text) if _has_cjk(text) else text


PERTURBATIONS: dict[str, Callable[[], Callable[[str, random.Random], str] | str]] = {
    "typos": lambda: _typos,
    "uppercase": lambda: lambda t, r: t.upper(),
    "lowercase": lambda: lambda t, r: t.lower(),
    "no_punctuation": lambda: _no_punctuation,
    "synonyms": lambda: _synonyms,
    "traditional": lambda: _converted("traditional"),
    "simplified": lambda: _converted("simplified"),
    "full_width": lambda: _full_width,
    "half_width": lambda: _half_width,
}


def perturb_text(name: str, text: str, *, seed: int = 0, index: int = 0) -> str:
    """``text`` under the perturbation ``name``, seeded by ``seed`` and the example's ``index``."""
    fn = PERTURBATIONS[name]()
    if isinstance(fn, str):
        raise ValueError(f"perturbation {name}: {fn}")
    return fn(text, random.Random(f"{seed}:{name}:{index}"))


def perturb_example(example: dict[str, Any], fn: Callable[[str, random.Random], str],
                    rng: random.Random) -> dict[str, Any]:
    """A copy of ``example`` with its text perturbed by ``fn`` (see the module doc for which fields); a field
    that would become blank keeps its text."""
    def keep(old: str) -> str:
        new = fn(old, rng)
        return new if new.strip() else old

    ex = dict(example)
    if isinstance(ex.get("text"), str):
        ex["text"] = keep(ex["text"])
        if isinstance(ex.get("text_pair"), str) and ex["text_pair"]:
            ex["text_pair"] = keep(ex["text_pair"])
    elif isinstance(ex.get("tokens"), list | tuple):
        # the tokens perturbed as one text (a word-level perturbation picks among all of them), split back
        old_tokens = [str(t) for t in ex["tokens"]]
        new_tokens = fn(_TOKEN_SEP.join(old_tokens), rng).split(_TOKEN_SEP)
        if len(new_tokens) == len(old_tokens):
            tags = list(ex.get("tags") or [None] * len(old_tokens))
            tokens, kept = [], []
            for old, new, tag in zip(old_tokens, new_tokens, tags, strict=True):
                new = new.strip()
                if not new and tag in ("O", None):
                    continue  # a punctuation token outside any entity, removed
                tokens.append(new if new and not any(ch.isspace() for ch in new) else old)
                kept.append(tag)
            if tokens:
                ex["tokens"] = tokens
                if ex.get("tags") is not None:
                    ex["tags"] = kept
    elif isinstance(ex.get("question"), str):
        ex["question"] = keep(ex["question"])
    elif isinstance(ex.get("messages"), list):
        ex["messages"] = [{**m, "content": keep(m["content"])}
                          if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str)
                          else m for m in ex["messages"]]
    return ex


def _outcome(pred: dict[str, Any]) -> Any:
    for key in ("label", "labels", "answer", "text"):
        if key in pred:
            value = pred[key]
            return tuple(value) if isinstance(value, list) else value
    if "entities" in pred:
        return tuple(sorted((e.get("type"), e.get("text")) for e in pred["entities"]))
    return None


def _flat_metric(task: Any, preds: Sequence[dict[str, Any]], exs: Sequence[dict[str, Any]], labels: list[str],
                 multi_label: bool, metric: str) -> float | None:
    if not exs:
        return None
    value = task.score(list(preds), list(exs), labels, multi_label=multi_label).get(metric)
    return float(value) if isinstance(value, int | float) else None


@dataclass
class RobustnessReport:
    """``results``: perturbation → ``metric``, ``original``, ``perturbed``, ``drop``, ``changed`` (examples the
    perturbation altered), ``n``, ``original_on_changed``, ``perturbed_on_changed``, ``drop_on_changed``,
    ``prediction_changed`` (share of the altered examples whose prediction changed) and up to
    :data:`MAX_SHOWN` ``examples``; or ``skipped`` with the reason."""

    results: dict[str, dict[str, Any]]
    metric: str
    seed: int

    def metrics(self) -> dict[str, Any]:
        """What metrics.json gets: ``robustness`` (without the shown examples, which only report.md lists)."""
        return {"robustness": {"metric": self.metric, "seed": self.seed,
                               "perturbations": {k: {f: v for f, v in r.items() if f != "examples"}
                                                 for k, r in self.results.items()}}}

    def markdown(self, folder: Path) -> list[str]:
        better = "lower" if lower_is_better(self.metric) else "higher"
        md = ["", "## Robustness", "",
              f"`{self.metric}` ({better} is better) with the test texts perturbed (seed {self.seed}); drop: how "
              "much worse than on the original texts, on all examples and on those the perturbation changed.", "",
              "| perturbation | changed | original | perturbed | drop | drop on changed | predictions changed |",
              "|---|---|---|---|---|---|---|"]
        shown: list[str] = []
        for name, r in self.results.items():
            if "skipped" in r:
                md.append(f"| {name} | skipped: {r['skipped']} | | | | | |")
                continue
            md.append(f"| {name} | {r['changed']} of {r['n']} | {_f(r['original'])} | {_f(r['perturbed'])} | "
                      f"{_f(r['drop'], True)} | {_f(r.get('drop_on_changed'), True)} | "
                      f"{_f(r.get('prediction_changed'))} |")
            for ex in r.get("examples", []):
                shown.append(f"- {name}: {ex['before']!r} → {ex['after']!r}: `{ex['was']}` → `{ex['now']}`")
        if shown:
            md += ["", "Predictions the perturbations changed:", "", *shown]
        return md


def _f(v: Any, signed: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def robustness_report(predictor: Any, dataset: Any, predictions: Sequence[dict[str, Any]], *, seed: int = 0,
                      batch_size: int = 64, perturbations: Sequence[str] | None = None,
                      options: dict[str, Any] | None = None) -> RobustnessReport:
    """Re-score ``dataset`` (predicted as ``predictions`` by ``predictor``) under each perturbation (default:
    all of :data:`PERTURBATIONS`)."""
    from tuneforge.evaluation.slices import example_text

    task, labels, multi = predictor.task, list(predictor.labels), bool(predictor.multi_label)
    examples = list(dataset.examples)
    scores = task.score(list(predictions), examples, labels, multi_label=multi)
    metric = headline_metric(task, {k: v for k, v in scores.items() if isinstance(v, int | float)})
    original = float(scores[metric])
    worse = -1.0 if lower_is_better(metric) else 1.0
    results: dict[str, dict[str, Any]] = {}
    for name in perturbations or list(PERTURBATIONS):
        fn = PERTURBATIONS[name]()
        if isinstance(fn, str):
            results[name] = {"skipped": fn}
            continue
        perturbed = [perturb_example(ex, fn, random.Random(f"{seed}:{name}:{i}")) for i, ex in enumerate(examples)]
        changed = [i for i, (a, b) in enumerate(zip(examples, perturbed, strict=True)) if a != b]
        new_preds = list(predictions)
        if changed:
            again = predictor.predict_examples([perturbed[i] for i in changed], batch_size=batch_size,
                                               **(options or {}))
            for i, p in zip(changed, again, strict=True):
                new_preds[i] = p
        after = _flat_metric(task, new_preds, perturbed, labels, multi, metric)
        r: dict[str, Any] = {"metric": metric, "original": original, "perturbed": after, "n": len(examples),
                             "changed": len(changed),
                             "drop": None if after is None else worse * (original - after)}
        if changed:
            before_c = _flat_metric(task, [predictions[i] for i in changed], [examples[i] for i in changed], labels,
                                    multi, metric)
            after_c = _flat_metric(task, [new_preds[i] for i in changed], [perturbed[i] for i in changed], labels,
                                   multi, metric)
            flips = [i for i in changed if _outcome(predictions[i]) != _outcome(new_preds[i])]
            r.update(original_on_changed=before_c, perturbed_on_changed=after_c,
                     drop_on_changed=None if before_c is None or after_c is None else worse * (before_c - after_c),
                     prediction_changed=len(flips) / len(changed),
                     examples=[{"before": example_text(examples[i])[:120], "after": example_text(perturbed[i])[:120],
                                "was": _outcome(predictions[i]), "now": _outcome(new_preds[i])}
                               for i in flips[:MAX_SHOWN]])
        results[name] = r
    return RobustnessReport(results=results, metric=metric, seed=seed)
