"""What the crawler takes from a page: its main text and title (trafilatura), its links, its ``<meta robots>``
wishes, its language (py3langid, else a script heuristic) and the keys that make two pages duplicates."""

from __future__ import annotations

import functools
import hashlib
import html as html_lib
import re
import unicodedata
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

__all__ = ["PageLinks", "detect_language", "exact_key", "extract_text", "is_html", "language_detector",
           "near_key", "page_links"]

_HTML_TYPES = ("text/html", "application/xhtml+xml")


def is_html(content_type: str) -> bool:
    """An HTML Content-Type (a missing one is accepted too: the body is sniffed after reading)."""
    ctype = content_type.split(";")[0].strip().lower()
    return ctype in _HTML_TYPES or ctype == ""


def looks_like_html(content: bytes) -> bool:
    head = content[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<p", b"<div", b"<!--"))


@dataclass
class PageLinks:
    """The links of a page (absolute, without fragments, in page order) and its ``<meta name=robots>`` wishes."""

    links: list[str] = field(default_factory=list)
    noindex: bool = False
    nofollow: bool = False


class _LinkParser(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.out = PageLinks()
        self._seen: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "base" and a.get("href"):
            self.base = urljoin(self.base, a["href"])
        elif tag == "meta" and a.get("name", "").lower() in ("robots", "tuneforge"):
            wishes = {w.strip().lower() for w in a.get("content", "").split(",")}
            self.out.noindex |= bool(wishes & {"noindex", "none"})
            self.out.nofollow |= bool(wishes & {"nofollow", "none"})
        elif tag == "a" and a.get("href") and "nofollow" not in a.get("rel", "").lower().split():
            link, _ = urldefrag(urljoin(self.base, html_lib.unescape(a["href"].strip())))
            if urlsplit(link).scheme in ("http", "https") and link not in self._seen:
                self._seen.add(link)
                self.out.links.append(link)


def page_links(html: str, url: str) -> PageLinks:
    """The followable links of ``html`` (``rel=nofollow`` ones left out) resolved against ``url``."""
    parser = _LinkParser(url)
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 (html.parser is lenient; a pathological page just yields fewer links)
        pass
    return parser.out


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_OG_TITLE = re.compile(r"""<meta[^>]+property=["']og:title["'][^>]+content=["']([^"']*)["']""", re.IGNORECASE)
_JUNK = re.compile(r"<(script|style|head|nav|footer|header|aside|form|noscript)\b.*?</\1\s*>",
                   re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_BLOCK = re.compile(r"</?(p|div|br|li|h[1-6]|tr|section|article)\b[^>]*>", re.IGNORECASE)


def _plain_text(html: str) -> str:
    text = _TAG.sub(" ", _BLOCK.sub("\n", _JUNK.sub(" ", html)))
    lines = (re.sub(r"[ \t\r\f\v]+", " ", html_lib.unescape(ln)).strip() for ln in text.split("\n"))
    return "\n".join(ln for ln in lines if ln)


def extract_text(html: str, url: str) -> tuple[str, str]:
    """The main text and the title of a page: trafilatura's extraction (boilerplate removed), or, when trafilatura
    finds nothing (a very short page) or is not installed, the visible text without head, scripts, navigation,
    header and footer. The title is the page's ``og:title``, else its ``<title>``."""
    text = title = ""
    try:
        import trafilatura
    except ImportError:  # pragma: no cover - trafilatura is a dependency; this keeps the crawler usable without
        pass
    else:
        text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True,
                                   favor_recall=True) or ""
    # The title from og:title or <title>: trafilatura's metadata pass (dates, authors) would double the time.
    m = _OG_TITLE.search(html) or _TITLE.search(html)
    title = re.sub(r"\s+", " ", html_lib.unescape(m.group(1))).strip() if m else ""
    return (text.strip() or _plain_text(html)), title


# --- language ------------------------------------------------------------------------------------------------


def language_detector() -> str:
    """The language detector in use: ``py3langid`` when installed, else ``script-heuristic``."""
    try:
        import py3langid  # noqa: F401
    except ImportError:
        return "script-heuristic"
    return "py3langid"


_CJK = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_ARABIC = re.compile(r"[\u0600-\u06ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def _by_script(text: str) -> str:
    counts = {code: len(rx.findall(text)) for code, rx in (("ja", _KANA), ("ko", _HANGUL), ("zh", _CJK),
                                                           ("ru", _CYRILLIC), ("ar", _ARABIC), ("en", _LATIN))}
    if counts["ja"] and counts["ja"] * 5 >= counts["zh"]:
        return "ja"  # kana beside the kanji
    best = max(counts, key=lambda c: counts[c])
    return best if counts[best] else "und"


@functools.lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str, *, min_confidence: float = 0.5) -> str:
    """An ISO 639-1 code for ``text`` (``und`` when there is nothing to tell by): py3langid's answer on the first
    2,000 characters when it is installed and at least ``min_confidence`` sure; else by script (Han → zh,
    kana → ja, Hangul → ko, Cyrillic → ru, Arabic → ar, Latin → en), which is what a few words allow."""
    sample = text[:2000]
    if not sample.strip():
        return "und"
    try:
        code, confidence = _identifier().classify(sample)
    except ImportError:
        return _by_script(sample)
    return str(code) if confidence >= min_confidence else _by_script(sample)


# --- duplicates ----------------------------------------------------------------------------------------------

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def exact_key(text: str) -> str:
    """SHA-256 of the text as extracted."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def near_key(text: str) -> str:
    """SHA-256 of the text normalized (NFKC, case-folded, punctuation and spacing removed): equal for pages that
    differ only in markup, case, punctuation or white space. Digits are kept: page 1 and page 2 differ."""
    norm = _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()
