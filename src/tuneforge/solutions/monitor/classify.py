"""Sentiment, language and topic of one item.

Sentiment comes from a TuneForge classification model (any labels: ``bearish/bullish/neutral``,
``negative/positive``, ...), one per language; a text goes to the Chinese model when at least a fifth of its
letters are CJK characters. Labels are mapped to a polarity (negative, positive, neutral) and a score in
[-1, 1] (P(positive) - P(negative)). Topic comes from keyword rules (English and Chinese) unless a topic model
is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneforge.errors import ConfigError

__all__ = ["DEFAULT_TOPICS", "Classified", "SentimentClassifier", "detect_language", "polarity", "topic_of"]

#: predicts classification outputs ({"label", "score", "scores"}) for a batch of texts
PredictFn = Callable[[list[str]], list[dict[str, Any]]]

_NEGATIVE = {"negative", "bearish", "neg", "bad", "sell", "down", "负面", "消极", "利空"}
_POSITIVE = {"positive", "bullish", "pos", "good", "buy", "up", "正面", "积极", "利好"}


def polarity(label: str) -> str:
    """negative, positive or neutral for a model's label name (unknown names are neutral)."""
    name = label.strip().lower()
    if name in _NEGATIVE:
        return "negative"
    if name in _POSITIVE:
        return "positive"
    return "neutral"


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2FFFF


def detect_language(text: str) -> str:
    """'zh' when at least 20 % of the letters are CJK ideographs, else 'en'."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "en"
    return "zh" if sum(_is_cjk(c) for c in letters) / len(letters) >= 0.2 else "en"


DEFAULT_TOPICS: dict[str, list[str]] = {
    "earnings": ["earnings", "revenue", "profit", "eps", "quarterly results", "q1", "q2", "q3", "q4", "loss per share",
                 "财报", "营收", "净利润", "业绩", "季报", "年报"],
    "analyst": ["upgrade", "downgrade", "price target", "rating", "outperform", "underperform", "overweight",
                "underweight", "analyst", "评级", "目标价", "上调", "下调"],
    "deals": ["merger", "acquisition", "acquire", "takeover", "buyout", "deal", "stake", "spin-off", "ipo",
              "并购", "收购", "重组", "上市"],
    "legal": ["lawsuit", "sue", "probe", "investigation", "sec ", "fine", "settlement", "antitrust", "regulator",
              "诉讼", "调查", "罚款", "监管", "立案"],
    "guidance": ["guidance", "outlook", "forecast", "expects", "预期", "指引", "预告"],
    "macro": ["fed", "inflation", "interest rate", "rates", "gdp", "jobs report", "unemployment", "treasury",
              "央行", "通胀", "利率", "降息", "加息"],
    "dividends": ["dividend", "buyback", "repurchase", "分红", "回购", "派息"],
}


def _keyword_regex(words: Sequence[str]) -> re.Pattern[str]:
    parts = []
    for w in words:
        w = w.strip().lower()
        if not w:
            continue
        # ASCII words match on word boundaries ("rates" not in "corporates"); CJK words anywhere
        parts.append(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])" if w.isascii() else re.escape(w))
    return re.compile("|".join(parts)) if parts else re.compile(r"(?!x)x")


def topic_of(text: str, topics: Mapping[str, Sequence[str]] | None = None) -> str | None:
    """The topic whose keywords occur most often in ``text`` (ties: the first listed), or None."""
    topics = DEFAULT_TOPICS if topics is None else topics
    low = text.lower()
    best, best_n = None, 0
    for name, words in topics.items():
        n = len(_keyword_regex(words).findall(low))
        if n > best_n:
            best, best_n = name, n
    return best


@dataclass(frozen=True)
class Classified:
    label: str
    polarity: str
    score: float
    confidence: float
    lang: str
    topic: str | None


def _signed_score(pred: Mapping[str, Any]) -> float:
    scores = pred.get("scores") or {pred["label"]: pred.get("score", 1.0)}
    pos = sum(float(p) for k, p in scores.items() if polarity(k) == "positive")
    neg = sum(float(p) for k, p in scores.items() if polarity(k) == "negative")
    return round(pos - neg, 6)


class SentimentClassifier:
    """Routes each text to the model of its language and maps the predictions to polarity and score."""

    def __init__(self, en: PredictFn | None, zh: PredictFn | None = None, *,
                 topics: Mapping[str, Sequence[str]] | None = None, topic_model: PredictFn | None = None) -> None:
        if en is None and zh is None:
            raise ConfigError("a sentiment model is needed: give an English model, a Chinese one, or both")
        self.en, self.zh = en, zh
        self.topics, self.topic_model = topics, topic_model

    @classmethod
    def from_run_dirs(cls, en: str | None, zh: str | None = None, *, topic: str | None = None) -> SentimentClassifier:
        """Load TuneForge run folders (``tuneforge train --output ...``)."""
        from tuneforge.inference import load_predictor

        def fn(path: str | None) -> PredictFn | None:
            if not path:
                return None
            p = load_predictor(path)
            if not p.task.sequence_level:  # one sentiment per text
                raise ConfigError(f"{path}: a {p.task.name} model; the monitor needs a classification model")
            return lambda texts: list(p.predict(texts))

        return cls(fn(en), fn(zh), topic_model=fn(topic))

    def __call__(self, texts: Sequence[str]) -> list[Classified]:
        langs = [detect_language(t) for t in texts]
        preds: list[dict[str, Any] | None] = [None] * len(texts)
        for lang in ("en", "zh"):
            idx = [i for i, g in enumerate(langs) if g == lang]
            if not idx:
                continue
            model = (self.en if lang == "en" else self.zh) or self.en or self.zh
            assert model is not None
            for i, pred in zip(idx, model([texts[i] for i in idx]), strict=True):
                preds[i] = pred
        topics: list[str | None]
        if self.topic_model is not None:
            topics = [str(p["label"]) for p in self.topic_model(list(texts))]
        else:
            topics = [topic_of(t, self.topics) for t in texts]
        out = []
        for p, lang, topic in zip(preds, langs, topics, strict=True):
            assert p is not None
            label = str(p["label"])
            out.append(Classified(label=label, polarity=polarity(label), score=_signed_score(p),
                                  confidence=float(p.get("score", 1.0)), lang=lang, topic=topic))
        return out
