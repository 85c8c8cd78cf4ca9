"""Where items come from: files, HTTP pushes, and RSS/Atom feeds or web pages polled on a schedule.

- :func:`read_items` reads JSONL or CSV files (``text`` required; ``title``, ``url``, ``guid``, ``published_at``,
  ``source`` optional), reporting every bad line at once.
- :func:`parse_feed` reads RSS 2.0, RSS 1.0 (RDF) and Atom (the crawler's parser,
  :func:`tuneforge.data.crawl.parse_feed_entries`); :func:`page_item` turns a web page into one item (its title
  and visible text).
- :class:`Poller` fetches due sources through the crawler's :class:`~tuneforge.data.crawl.Fetcher` on one
  ``httpx.Client``: robots.txt for its user agent (cached per host, re-checked on every redirect), a size limit,
  conditional GETs (``If-None-Match`` / ``If-Modified-Since``), ``304`` read as "nothing new"; a transport can be
  injected (``httpx.MockTransport`` in tests).
- :class:`Deduplicator` drops repeats: the same URL or guid, the same normalised text, or a near-duplicate
  (Jaccard of character 5-gram sets at or above a threshold against recent items), so a story syndicated
  with a different headline suffix is counted once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from tuneforge.data.cleaning import CleanOptions, clean_text
from tuneforge.data.crawl import Fetcher, parse_feed_entries
from tuneforge.errors import ConfigError, DataError, DataProblem

__all__ = ["USER_AGENT", "Deduplicator", "FetchResult", "Poller", "RawItem", "SourceState", "normalized_hash",
           "page_item", "parse_feed", "parse_time", "read_items"]

USER_AGENT = "TuneForgeMonitor/1.0 (+https://github.com/tuneforge; financial-news sentiment monitor)"
MAX_TEXT = 20_000
_CLEAN = CleanOptions()


@dataclass(frozen=True)
class RawItem:
    """One news item or post before classification."""

    text: str
    title: str = ""
    url: str | None = None
    guid: str | None = None
    published_at: datetime | None = None
    source: str = ""

    @property
    def full_text(self) -> str:
        if self.title and not self.text.startswith(self.title):
            return f"{self.title}. {self.text}" if self.text else self.title
        return self.text


def parse_time(value: Any) -> datetime | None:
    """ISO 8601, RFC 822 (feeds) or a Unix time, as an aware UTC datetime; None when empty.
    Raises ValueError when the value is not a time."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), UTC)
    s = str(value).strip()
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        try:
            dt = parsedate_to_datetime(s)
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"'{s[:40]}' is not a time (use ISO 8601, e.g. 2024-05-01T09:30:00Z)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def _clean(text: str) -> str:
    return clean_text(text, _CLEAN)[:MAX_TEXT]


# --- files --------------------------------------------------------------------------------------------------


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    yield n, None, f"not JSON: {e.msg}"
                    continue
                yield (n, row, None) if isinstance(row, dict) else (n, None, "a line must be a JSON object")
    elif path.suffix.lower() in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            for n, row in enumerate(reader, 2):
                yield n, dict(row), None
    else:
        raise DataError([DataProblem(str(path), None, None, f"unknown file type '{path.suffix}'",
                                     "give a .jsonl or .csv file")])


def read_items(path: str | Path, *, source: str | None = None) -> list[RawItem]:
    """Items from a JSONL or CSV file; every bad line is reported at once."""
    p = Path(path)
    if not p.is_file():
        raise DataError([DataProblem(str(p), None, None, "no such file")])
    items: list[RawItem] = []
    problems: list[DataProblem] = []
    for n, row, why in _rows(p):
        if row is None:
            problems.append(DataProblem(str(p), n, None, why or "unreadable"))
            continue
        text = row.get("text") or row.get("content") or row.get("body") or ""
        title = row.get("title") or ""
        if not isinstance(text, str) or not isinstance(title, str) or not (text.strip() or title.strip()):
            problems.append(DataProblem(str(p), n, "text", "no text", "give a non-empty 'text' (or 'title')"))
            continue
        try:
            at = parse_time(row.get("published_at") or row.get("time") or row.get("timestamp"))
        except ValueError as e:
            problems.append(DataProblem(str(p), n, "published_at", str(e)))
            continue
        items.append(RawItem(text=_clean(text), title=_clean(title), url=row.get("url") or None,
                             guid=str(row["guid"]) if row.get("guid") not in (None, "") else None,
                             published_at=at, source=str(row.get("source") or source or f"file:{p.name}")))
    if problems:
        raise DataError(problems)
    return items


# --- feeds and pages -----------------------------------------------------------------------------------------

def _when(dates: Iterable[str]) -> datetime | None:
    for v in dates:
        try:
            return parse_time(v)
        except ValueError:
            continue
    return None


def parse_feed(content: bytes | str, *, url: str = "", source: str | None = None) -> list[RawItem]:
    """Items of an RSS 2.0, RSS 1.0 or Atom document (a feed that is not XML raises a DataError)."""
    src = source or url
    items = [RawItem(text=_clean(e.text), title=_clean(e.title), url=e.link, guid=e.guid,
                     published_at=_when(e.dates), source=src) for e in parse_feed_entries(content, url=url)]
    return [i for i in items if i.text or i.title]


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_BODY_JUNK = re.compile(r"<(head|nav|footer|header|aside|form|noscript)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def page_item(html: str, *, url: str, source: str | None = None, at: datetime | None = None) -> RawItem:
    """A web page as one item: its <title> and visible text (without head, navigation, header and footer)."""
    m = _TITLE.search(html)
    title = _clean(m.group(1)) if m else ""
    text = _clean(_BODY_JUNK.sub(" ", html))
    return RawItem(text=text, title=title, url=url, guid=url, published_at=at, source=source or url)


# --- de-duplication -------------------------------------------------------------------------------------------

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_URLS = re.compile(r"https?://\S+")


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", _URLS.sub(" ", text)).lower()
    return _NON_WORD.sub(" ", text).strip()


def normalized_hash(text: str) -> str:
    """SHA-256 of the text without links, case, punctuation and extra spaces (equal for trivial re-posts)."""
    return hashlib.sha256(_normalize(text).encode("utf-8")).hexdigest()


def _order(shingle: str) -> bytes:
    return hashlib.blake2b(shingle.encode("utf-8"), digest_size=8).digest()


def _shingles(text: str, k: int = 5) -> frozenset[str]:
    t = _normalize(text)
    return frozenset(t[i:i + k] for i in range(max(1, len(t) - k + 1)))


class Deduplicator:
    """Remembers recent items; :meth:`seen` says whether an item repeats one (and remembers it if not)."""

    def __init__(self, *, threshold: float = 0.8, memory: int = 5000) -> None:
        if not 0 < threshold <= 1:
            raise ConfigError(f"threshold: {threshold} must be in (0, 1]")
        self.threshold = threshold
        self._keys: OrderedDict[str, None] = OrderedDict()
        self.memory = memory
        # near-duplicate search by prefix filtering: under one fixed order of shingles (their hash), two sets
        # with Jaccard >= t share a shingle among the first |x| - ceil(t|x|) + 1 of each, so only those are
        # indexed and probed, and only the candidates found are compared in full
        self._sets: OrderedDict[int, frozenset[str]] = OrderedDict()
        self._prefix: dict[int, list[str]] = {}
        self._index: dict[str, set[int]] = {}
        self._next = 0

    def _remember_key(self, key: str) -> None:
        self._keys[key] = None
        while len(self._keys) > 3 * self.memory:
            self._keys.popitem(last=False)

    def _prefix_of(self, sh: frozenset[str]) -> list[str]:
        n = len(sh)
        return sorted(sh, key=_order)[: n - math.ceil(self.threshold * n - 1e-9) + 1]

    def remember(self, item: RawItem) -> None:
        for key in self._item_keys(item):
            self._remember_key(key)
        if self.memory <= 0:
            return
        sh = _shingles(item.full_text)
        k, self._next = self._next, self._next + 1
        self._sets[k] = sh
        self._prefix[k] = self._prefix_of(sh)
        for tok in self._prefix[k]:
            self._index.setdefault(tok, set()).add(k)
        while len(self._sets) > self.memory:
            old, _ = self._sets.popitem(last=False)
            for tok in self._prefix.pop(old):
                ids = self._index[tok]
                ids.discard(old)
                if not ids:
                    del self._index[tok]

    @staticmethod
    def _item_keys(item: RawItem) -> list[str]:
        keys = [f"h:{normalized_hash(item.full_text)}"]
        if item.url:
            keys.append(f"u:{item.url}")
        if item.guid:
            keys.append(f"g:{item.guid}")
        return keys

    def why_duplicate(self, item: RawItem) -> str | None:
        """'url', 'guid', 'text', 'near' or None."""
        if item.url and f"u:{item.url}" in self._keys:
            return "url"
        if item.guid and f"g:{item.guid}" in self._keys:
            return "guid"
        if f"h:{normalized_hash(item.full_text)}" in self._keys:
            return "text"
        sh = _shingles(item.full_text)
        candidates: set[int] = set()
        for tok in self._prefix_of(sh):
            candidates |= self._index.get(tok, set())
        for k in candidates:
            other = self._sets[k]
            inter = len(sh & other)
            if inter / (len(sh) + len(other) - inter) >= self.threshold - 1e-9:
                return "near"
        return None

    def seen(self, item: RawItem) -> bool:
        if self.why_duplicate(item) is not None:
            return True
        self.remember(item)
        return False

    def filter(self, items: Iterable[RawItem]) -> list[RawItem]:
        return [i for i in items if not self.seen(i)]


# --- polling --------------------------------------------------------------------------------------------------


@dataclass
class SourceState:
    """A polled source and what the poller remembers about it between polls."""

    url: str
    kind: str = "feed"  # feed | page
    interval_s: int = 900
    etag: str | None = None
    last_modified: str | None = None
    last_polled_at: datetime | None = None
    name: str = ""
    id: str = ""

    def due(self, now: datetime) -> bool:
        return self.last_polled_at is None or now - self.last_polled_at >= timedelta(seconds=self.interval_s)


@dataclass
class FetchResult:
    """One poll of one source: ``status`` is ok, not_modified, disallowed (robots.txt) or error."""

    source: SourceState
    status: str
    items: list[RawItem] = field(default_factory=list)
    detail: str = ""


class Poller:
    """Fetches feeds and pages politely: robots.txt, a user agent, conditional GETs and per-source intervals."""

    def __init__(self, *, client: httpx.Client | None = None, transport: httpx.BaseTransport | None = None,
                 user_agent: str = USER_AGENT, timeout_s: float = 15.0, max_bytes: int = 5_000_000,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), public_only: bool = False) -> None:
        """``public_only``: refuse URLs (and redirects) to non-public addresses, for URLs that tenants gave."""
        from tuneforge.utils.net import public_client

        self.user_agent = user_agent
        make = public_client if public_only else httpx.Client
        self.client = client or make(transport=transport, timeout=timeout_s, follow_redirects=True,
                                     headers={"User-Agent": user_agent})
        self.max_bytes = max_bytes
        self.clock = clock
        # Sources are polled minutes apart: a host's Crawl-delay is kept between back-to-back polls up to 2 s, and
        # an unreachable robots.txt allows the poll (a feed host that fails robots.txt fails the feed too).
        self.fetcher = Fetcher(user_agent=user_agent, client=self.client, max_bytes=max_bytes,
                               max_crawl_delay_s=2.0, robots_unreachable="allow", robots_retries=0)

    def close(self) -> None:
        self.client.close()

    def allowed(self, url: str) -> bool:
        """Whether robots.txt of the URL's host lets this user agent fetch it (no robots.txt: yes)."""
        return self.fetcher.allowed(url)

    def fetch(self, source: SourceState) -> FetchResult:
        """Poll one source now (whether or not it is due); updates its etag/last_modified/last_polled_at."""
        source.last_polled_at = self.clock()
        if not self.allowed(source.url):
            return FetchResult(source, "disallowed", detail="robots.txt disallows this URL for our user agent")
        headers = {}
        if source.etag:
            headers["If-None-Match"] = source.etag
        if source.last_modified:
            headers["If-Modified-Since"] = source.last_modified
        r = self.fetcher.fetch(source.url, headers=headers)
        if r.status == "not_modified":
            return FetchResult(source, "not_modified")
        if r.status == "disallowed":
            return FetchResult(source, "disallowed", detail="robots.txt disallows this URL for our user agent" +
                               (" (after a redirect)" if r.redirects else ""))
        if not r.ok:
            return FetchResult(source, "error", detail=r.detail)
        source.etag = r.headers.get("etag") or source.etag
        source.last_modified = r.headers.get("last-modified") or source.last_modified
        name = source.name or source.url
        try:
            if source.kind == "page":
                items = [page_item(r.text, url=r.final_url, source=name, at=self.clock())]
            else:
                items = parse_feed(r.content, url=r.final_url, source=name)
        except DataError as e:
            return FetchResult(source, "error", detail=str(e))
        now = self.clock()
        # an item without a date gets the time it was first seen
        items = [i if i.published_at else replace(i, published_at=now) for i in items]
        return FetchResult(source, "ok", items)

    def poll_due(self, sources: Iterable[SourceState]) -> list[FetchResult]:
        now = self.clock()
        return [self.fetch(s) for s in sources if s.due(now)]
