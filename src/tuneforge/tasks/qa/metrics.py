"""SQuAD v1.1 exact match and F1 with the official answer normalization.

Chinese (and other CJK) answers are compared character by character, as the CMRC evaluation does, since the
official whitespace tokenization would treat a whole Chinese answer as a single token.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from tuneforge.tasks.common import is_cjk

__all__ = ["normalize_answer", "squad_em_f1"]

_PUNCT = set(string.punctuation) | set("，。、！？；：“”‘’（）《》【】…—·")


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (the official SQuAD v1.1 script)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _tokens(s: str) -> list[str]:
    out: list[str] = []
    for w in normalize_answer(s).split():
        if any(is_cjk(c) for c in w):
            out.extend(w)
        else:
            out.append(w)
    return out


def _f1(pred: str, gold: str) -> float:
    p, g = _tokens(pred), _tokens(gold)
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_em_f1(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of one prediction against its gold answers, the maximum over golds, each 0 or 1-scaled."""
    if not golds:
        return 0.0, 0.0
    em = max(float(normalize_answer(prediction) == normalize_answer(g)) for g in golds)
    f1 = max(_f1(prediction, g) for g in golds)
    return em, f1
