"""Which companies and tickers an item mentions: a watch-list, cashtags, and optionally a NER model.

A watch-list entry is a canonical name (``AAPL``, ``贵州茅台``) with aliases. Matching rules, chosen so that common
words do not become companies:

- an all-caps ASCII alias (a ticker: ``AAPL``) matches case-sensitively on word boundaries, and also as a
  cashtag (``$aapl``);
- other ASCII aliases (``Apple``, ``Goldman Sachs``) match case-insensitively on word boundaries;
- a digits-only alias (``600519``) matches when not part of a longer number;
- a CJK alias (``茅台``) matches as a substring (Chinese has no spaces between words).

With ``cashtags=True`` every ``$TICKER`` is an entity even when it is not on the list. A NER model (a TuneForge
NER run) adds its ORG entities.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneforge.errors import ConfigError

__all__ = ["EntityMatcher", "WatchEntry"]

_CASHTAG = re.compile(r"(?<![A-Za-z0-9$])\$([A-Za-z][A-Za-z0-9.]{0,9})(?![A-Za-z0-9])")

NerFn = Callable[[list[str]], list[dict[str, Any]]]


@dataclass(frozen=True)
class WatchEntry:
    name: str
    aliases: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ConfigError("watch-list: an entry has an empty name")


def _pattern(alias: str) -> tuple[re.Pattern[str], bool] | None:
    a = alias.strip().lstrip("$") if alias.strip().startswith("$") else alias.strip()
    if not a:
        return None
    if not a.isascii():
        return re.compile(re.escape(a)), False
    if a.isdigit():
        return re.compile(rf"(?<!\d){re.escape(a)}(?!\d)"), False
    if a.upper() == a and any(c.isalpha() for c in a):
        # a ticker: exact case as a word, or as a cashtag in any case
        return re.compile(rf"(?<![A-Za-z0-9]){re.escape(a)}(?![A-Za-z0-9])|(?i:\${re.escape(a)}(?![A-Za-z0-9]))"), \
            True
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(a)}(?![A-Za-z0-9])", re.IGNORECASE), False


class EntityMatcher:
    """Finds the watch-list entities (and cashtags, and NER ORGs) in texts."""

    def __init__(self, entries: Iterable[WatchEntry] = (), *, cashtags: bool = True, ner: NerFn | None = None,
                 ner_types: Sequence[str] = ("ORG",)) -> None:
        self.entries = list(entries)
        self.cashtags, self.ner, self.ner_types = cashtags, ner, set(ner_types)
        self._patterns: list[tuple[str, re.Pattern[str]]] = []
        self._tickers: dict[str, str] = {}
        for e in self.entries:
            for alias in [e.name, *e.aliases]:
                compiled = _pattern(alias)
                if compiled is None:
                    continue
                self._patterns.append((e.name, compiled[0]))
                if compiled[1]:
                    self._tickers[alias.strip().lstrip("$").upper()] = e.name

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Sequence[str]], **kw: Any) -> EntityMatcher:
        return cls([WatchEntry(k, list(v)) for k, v in mapping.items()], **kw)

    def match(self, text: str) -> list[str]:
        """The entities of one text, in order of first mention, without repeats."""
        found: list[tuple[int, str]] = []
        for name, pat in self._patterns:
            m = pat.search(text)
            if m:
                found.append((m.start(), name))
        if self.cashtags:
            for m in _CASHTAG.finditer(text):
                tag = m.group(1).upper()
                found.append((m.start(), self._tickers.get(tag, tag)))
        out: list[str] = []
        for _, name in sorted(found):
            if name not in out:
                out.append(name)
        return out

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        results = [self.match(t) for t in texts]
        if self.ner is not None and texts:
            for ents, pred in zip(results, self.ner(list(texts)), strict=True):
                for e in pred.get("entities", []):
                    if e.get("type") in self.ner_types:
                        name = str(e.get("text", "")).strip()
                        if name and name not in ents:
                            ents.append(name)
        return results
