"""RSS 2.0, RSS 1.0 (RDF) and Atom feeds, read with :mod:`xml.etree` (feedparser is not a dependency).

:func:`parse_feed_entries` gives each entry's title, link (absolute), body text, guid and its date strings; the
crawler follows the links of a feed it meets, and the finance monitor turns the entries into news items.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urljoin

from tuneforge.errors import DataError, DataProblem

__all__ = ["FeedEntry", "looks_like_feed", "parse_feed_entries"]

_ATOM = "{http://www.w3.org/2005/Atom}"
_RSS1 = "{http://purl.org/rss/1.0/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF"
_DC = "{http://purl.org/dc/elements/1.1/}"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
_FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/xml", "text/xml")


@dataclass(frozen=True)
class FeedEntry:
    """One feed entry as written in the feed (text not cleaned). ``dates``: its date strings, preferred first
    (Atom published then updated; RSS pubDate then dc:date)."""

    title: str
    link: str | None
    text: str
    guid: str | None
    dates: tuple[str, ...] = ()


def looks_like_feed(content_type: str, content: bytes) -> bool:
    """Whether a response is probably a feed: an RSS/Atom/XML Content-Type and an ``<rss``/``<feed``/``<rdf:RDF``
    root near the start."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype not in _FEED_TYPES:
        return False
    head = content[:2048].lstrip().lower()
    return any(tag in head for tag in (b"<rss", b"<feed", b"<rdf:rdf"))


def _text(el: ET.Element | None) -> str:
    return "".join(el.itertext()).strip() if el is not None else ""


def _first(el: ET.Element, *tags: str) -> ET.Element | None:
    for t in tags:
        found = el.find(t)
        if found is not None:
            return found
    return None


def _dates(el: ET.Element, *tags: str) -> tuple[str, ...]:
    return tuple(v for v in (_text(el.find(t)) for t in tags) if v)


def parse_feed_entries(content: bytes | str, *, url: str = "") -> list[FeedEntry]:
    """The entries of an RSS 2.0, RSS 1.0 or Atom document, links made absolute against ``url``.

    Raises:
        DataError: the document is not XML, or its root is not an RSS or Atom one.
    """
    try:
        root = ET.fromstring(content)
    except ET.ParseError as e:
        raise DataError([DataProblem(url or "feed", None, None, f"not an RSS/Atom feed: {e}",
                                     "check the URL points at the feed, not at a web page")]) from None
    entries: list[FeedEntry] = []
    if root.tag == f"{_ATOM}feed":
        for entry in root.iter(f"{_ATOM}entry"):
            link = next((lk.get("href") for lk in entry.findall(f"{_ATOM}link")
                         if lk.get("rel", "alternate") == "alternate"), None)
            entries.append(FeedEntry(
                title=_text(entry.find(f"{_ATOM}title")), link=urljoin(url, link) if link else None,
                text=_text(_first(entry, f"{_ATOM}content", f"{_ATOM}summary")),
                guid=_text(entry.find(f"{_ATOM}id")) or None,
                dates=_dates(entry, f"{_ATOM}published", f"{_ATOM}updated")))
        return entries
    items = list(root.iter("item")) or list(root.iter(f"{_RSS1}item"))
    if not items and root.tag not in ("rss", _RDF):
        raise DataError([DataProblem(url or "feed", None, None, f"<{root.tag}> is not an RSS or Atom root",
                                     "check the URL points at the feed")])
    for entry in items:
        link = _text(_first(entry, "link", f"{_RSS1}link"))
        entries.append(FeedEntry(
            title=_text(_first(entry, "title", f"{_RSS1}title")), link=urljoin(url, link) if link else None,
            text=_text(_first(entry, f"{_CONTENT}encoded", "description", f"{_RSS1}description")),
            guid=_text(entry.find("guid")) or None, dates=_dates(entry, "pubDate", f"{_DC}date")))
    return entries
