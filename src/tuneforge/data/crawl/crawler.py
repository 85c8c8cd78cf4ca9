"""A small breadth-first crawler for collecting training text: ``tuneforge data crawl``.

From the seed URLs it fetches pages through a :class:`~tuneforge.data.crawl.fetcher.Fetcher` (robots.txt,
Crawl-delay, per-host pacing, size limit, redirects checked hop by hop), keeps the HTML ones, extracts their main
text, drops exact and near duplicates, tags the language, and follows their links (and the entries of an RSS/Atom
feed) until ``max_pages`` pages were written. Every URL that was not written is counted with the reason.
"""

from __future__ import annotations

import json
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urlsplit

from tuneforge.data.crawl.extract import (
    detect_language,
    exact_key,
    extract_text,
    is_html,
    looks_like_html,
    near_key,
    page_links,
)
from tuneforge.data.crawl.feeds import looks_like_feed, parse_feed_entries
from tuneforge.data.crawl.fetcher import Fetcher
from tuneforge.errors import ConfigError, DataError

__all__ = ["SKIP_REASONS", "CrawlOptions", "CrawlSummary", "crawl", "crawl_to_file", "same_site"]

#: why a URL was not written, as counted in :attr:`CrawlSummary.skipped`
SKIP_REASONS = {
    "disallowed": "disallowed by robots.txt",
    "off_scope": "redirected outside the site",
    "http_error": "HTTP error",
    "wrong_type": "not HTML",
    "too_large": "over --max-bytes",
    "redirect_loop": "redirect loop",
    "error": "network error",
    "not_modified": "not modified",
    "empty": "no text",
    "short": "text under --min-chars",
    "duplicate": "exact duplicate",
    "near_duplicate": "near duplicate",
    "language": "not in --lang",
    "noindex": "meta robots noindex",
    "feed": "a feed (its entries were queued)",
    "duplicate_url": "redirected to a page already fetched",
}


@dataclass(frozen=True)
class CrawlOptions:
    """How far and how politely to crawl (see ``tuneforge data crawl --help``)."""

    max_pages: int = 100
    same_domain: bool = True
    delay_s: float = 1.0
    max_bytes: int = 2_000_000
    timeout_s: float = 15.0
    languages: tuple[str, ...] = ()
    min_chars: int = 1
    max_depth: int | None = None

    def problems(self) -> list[str]:
        out = []
        if self.max_pages < 1:
            out.append(f"max_pages: must be at least 1, got {self.max_pages}")
        if self.delay_s < 0:
            out.append(f"delay: must be 0 or more seconds, got {self.delay_s}")
        if self.max_bytes < 1024:
            out.append(f"max_bytes: must be at least 1024, got {self.max_bytes}")
        if self.max_depth is not None and self.max_depth < 0:
            out.append(f"max_depth: must be 0 or more, got {self.max_depth}")
        return out


@dataclass
class CrawlSummary:
    """What a crawl did: URLs requested, pages written, and the URLs skipped by reason (with an example each)."""

    written: int = 0
    fetched: int = 0
    requests: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    off_site_links: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def skip(self, reason: str, url: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, url)

    def as_dict(self) -> dict[str, Any]:
        return {"written": self.written, "fetched": self.fetched, "requests": self.requests,
                "skipped": dict(self.skipped), "off_site_links": self.off_site_links,
                "seconds": round(self.seconds, 3), "interrupted": self.interrupted}


def _site_key(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().removeprefix("www.")
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return host, port


def same_site(seeds: Iterable[str]) -> Callable[[str], bool]:
    """A scope test: the URL's host is a seed's host or a subdomain of it (``www.`` ignored), on the same port."""
    keys = {_site_key(s) for s in seeds}

    def inside(url: str) -> bool:
        host, port = _site_key(url)
        return any(port == p and (host == h or host.endswith("." + h)) for h, p in keys)

    return inside


def _canonical(url: str) -> str:
    url, _ = urldefrag(url)
    parts = urlsplit(url)
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower(), path=parts.path or "/").geturl()


def crawl(seeds: Sequence[str], options: CrawlOptions, *, fetcher: Fetcher | None = None,
          summary: CrawlSummary | None = None,
          on_url: Callable[[str, str, CrawlSummary], None] | None = None) -> Iterable[dict[str, Any]]:
    """Yield one record per page kept: ``{"text", "url", "title", "lang", "fetched_at"}`` (see the module
    docstring). ``on_url(url, outcome, summary)`` is called after each URL (outcome: ``written`` or a skip
    reason); ``summary`` is filled as the crawl goes."""
    problems = options.problems()
    bad = [s for s in seeds if urlsplit(s).scheme not in ("http", "https") or not urlsplit(s).netloc]
    problems += [f"URL: {s!r} is not an http(s) URL" for s in bad]
    if not seeds:
        problems.append("URL: give at least one URL to start from")
    if problems:
        raise ConfigError(problems)
    summary = summary if summary is not None else CrawlSummary()
    own = fetcher is None
    fetcher = fetcher or Fetcher(delay_s=options.delay_s, max_bytes=options.max_bytes, timeout_s=options.timeout_s)
    scope = same_site(seeds) if options.same_domain else None
    queue: deque[tuple[str, int]] = deque((_canonical(s), 0) for s in seeds)
    queued = {u for u, _ in queue}
    done_urls: set[str] = set()
    seen_text: set[str] = set()
    seen_near: set[str] = set()
    started = datetime.now(UTC)

    def tell(url: str, outcome: str) -> None:
        if outcome != "written":
            summary.skip(outcome, url)
        if on_url is not None:
            on_url(url, outcome, summary)

    def enqueue(links: Iterable[str], depth: int) -> None:
        if options.max_depth is not None and depth > options.max_depth:
            return
        for link in links:
            link = _canonical(link)
            if link in queued:
                continue
            if scope is not None and not scope(link):
                summary.off_site_links += 1
                continue
            queued.add(link)
            queue.append((link, depth))

    try:
        attempts = 0
        while queue and summary.written < options.max_pages and attempts < 20 * options.max_pages:
            url, depth = queue.popleft()
            attempts += 1
            res = fetcher.fetch(url, accept=lambda ct: is_html(ct) or "xml" in ct.lower(), scope=scope)
            summary.requests = fetcher.requests
            if not res.ok:
                tell(url, res.status)
                continue
            summary.fetched += 1
            final = _canonical(res.final_url or url)
            if final != url and final in done_urls:
                tell(url, "duplicate_url")
                continue
            done_urls.update((url, final))
            if looks_like_feed(res.content_type, res.content):
                try:
                    entries = parse_feed_entries(res.content, url=final)
                except DataError:
                    tell(url, "wrong_type")
                    continue
                enqueue((e.link for e in entries if e.link), depth + 1)
                tell(url, "feed")
                continue
            if not (is_html(res.content_type) and (res.content_type or looks_like_html(res.content))):
                tell(url, "wrong_type")
                continue
            html = res.text
            meta = page_links(html, final)
            if not meta.nofollow:
                enqueue(meta.links, depth + 1)
            if meta.noindex:
                tell(url, "noindex")
                continue
            text, title = extract_text(html, final)
            reason = _why_not(text, options, seen_text, seen_near)
            if reason:
                tell(url, reason)
                continue
            lang = detect_language(text)
            if options.languages and lang not in options.languages:
                tell(url, "language")
                continue
            summary.written += 1
            tell(url, "written")
            yield {"text": text, "url": final, "title": title, "lang": lang,
                   "fetched_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")}
    finally:
        summary.requests = fetcher.requests
        summary.seconds = (datetime.now(UTC) - started).total_seconds()
        if own:
            fetcher.close()


def _why_not(text: str, options: CrawlOptions, seen_text: set[str], seen_near: set[str]) -> str | None:
    if not text.strip():
        return "empty"
    if len(text) < options.min_chars:
        return "short"
    exact, near = exact_key(text), near_key(text)
    if exact in seen_text:
        return "duplicate"
    if near in seen_near:
        return "near_duplicate"
    seen_text.add(exact)
    seen_near.add(near)
    return None


def crawl_to_file(seeds: Sequence[str], output: str | os.PathLike[str], options: CrawlOptions, *,
                  fetcher: Fetcher | None = None,
                  on_url: Callable[[str, str, CrawlSummary], None] | None = None) -> CrawlSummary:
    """Crawl into ``output`` (JSON Lines), written to a temporary file beside it and renamed at the end, so the
    file is never half-written. Interrupted (Ctrl-C), it keeps the pages crawled so far
    (``summary.interrupted``)."""
    from tuneforge.utils.fs import storage_errors

    out = Path(output)
    summary = CrawlSummary()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with storage_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tmp.open("w", encoding="utf-8") as f:
                try:
                    for record in crawl(seeds, options, fetcher=fetcher, summary=summary, on_url=on_url):
                        f.write(json.dumps(record, ensure_ascii=False) + "\n")
                except KeyboardInterrupt:
                    summary.interrupted = True
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return summary
