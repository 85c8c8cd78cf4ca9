"""A polite HTTP fetcher: robots.txt, Crawl-delay, a per-host rate limit, a clear user agent, a size limit and
redirects that are checked hop by hop. The crawler (``tuneforge data crawl``) and the finance monitor's feed
poller both fetch through it.

Rules it keeps for every request:

- robots.txt is read once per host (``urllib.robotparser``) before anything else is asked of that host; a URL it
  disallows for our user agent is never requested (not even with HEAD). A missing robots.txt (other 4xx) allows
  everything; 401/403 disallow everything (as ``urllib.robotparser`` reads them); a 5xx answer or an unreachable
  robots.txt disallows everything, as RFC 9309 says (``robots_unreachable="allow"`` relaxes that); a connection
  that fails to open is retried twice first (``robots_retries``).
- Requests to one host are spaced by the larger of ``delay_s`` and the host's ``Crawl-delay`` (or
  ``Request-rate``) for our agent, capped at ``max_crawl_delay_s``.
- Redirects are followed by hand, up to ``max_redirects``: each hop is checked against robots.txt and the
  caller's ``scope`` again, so a redirect cannot lead the fetcher off the allowed site or into a disallowed path.
- The body is streamed: a response whose Content-Type the caller does not accept is closed without reading it,
  and one larger than ``max_bytes`` (by Content-Length, or while reading) is abandoned.
"""

from __future__ import annotations

import re
import time
import urllib.robotparser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx

from tuneforge import __version__

__all__ = ["USER_AGENT", "Fetched", "Fetcher", "host_of"]

USER_AGENT = f"TuneForge/{__version__} (+https://github.com/tuneforge/tuneforge; data crawler)"

#: the part of a robots.txt that is read (RFC 9309 asks for at least 500 KiB)
ROBOTS_MAX_BYTES = 512 * 1024

#: the outcomes of :meth:`Fetcher.fetch`, as ``Fetched.status``
STATUSES = ("ok", "not_modified", "disallowed", "off_scope", "http_error", "wrong_type", "too_large",
            "redirect_loop", "error")

_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def host_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased: the unit robots.txt and the rate limit apply to."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


@dataclass
class Fetched:
    """One fetch: ``status`` (one of :data:`STATUSES`), the final URL after redirects, and the body when ok."""

    url: str
    status: str
    final_url: str = ""
    status_code: int | None = None
    content: bytes = b""
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    redirects: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def text(self) -> str:
        """The body decoded with the charset of its Content-Type, else of a ``<meta charset>``, else UTF-8."""
        charset = None
        m = re.search(r"charset\s*=\s*[\"']?([^;\"'\s]+)", self.content_type, re.IGNORECASE)
        if m:
            charset = m.group(1)
        else:
            mm = _CHARSET.search(self.content[:4096])
            charset = mm.group(1).decode("ascii", "replace") if mm else None
        try:
            return self.content.decode(charset or "utf-8", errors="replace")
        except LookupError:  # an unknown charset name
            return self.content.decode("utf-8", errors="replace")


class Fetcher:
    """Fetches URLs politely (see the module docstring). Not thread-safe: one per crawl or poller.

    ``transport`` (or a ready ``client``) can be injected: ``httpx.MockTransport`` in tests. ``public_only`` refuses
    requests, redirects included, to non-public addresses (for URLs that tenants give). ``clock`` and ``sleep``
    are injectable so that tests do not wait.
    """

    def __init__(self, *, user_agent: str = USER_AGENT, client: httpx.Client | None = None,
                 transport: httpx.BaseTransport | None = None, timeout_s: float = 15.0, max_bytes: int = 5_000_000,
                 delay_s: float = 0.0, max_crawl_delay_s: float = 60.0, max_redirects: int = 5,
                 public_only: bool = False, robots_unreachable: Literal["allow", "disallow"] = "disallow",
                 robots_retries: int = 2,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        from tuneforge.utils.net import public_client

        self.user_agent = user_agent
        make = public_client if public_only else httpx.Client
        self._own_client = client is None
        self.client = client or make(transport=transport, timeout=timeout_s, headers={"User-Agent": user_agent})
        self.max_bytes = max_bytes
        self.delay_s = delay_s
        self.max_crawl_delay_s = max_crawl_delay_s
        self.max_redirects = max_redirects
        self.robots_unreachable = robots_unreachable
        self.robots_retries = robots_retries
        self.clock = clock
        self.sleep = sleep
        self.requests = 0
        self._robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self._next_at: dict[str, float] = {}

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    # --- robots.txt and pacing ---------------------------------------------------------------------------------

    def robots(self, url: str) -> urllib.robotparser.RobotFileParser:
        """The parsed robots.txt of the URL's host (fetched on first use, then cached)."""
        host = host_of(url)
        rp = self._robots.get(host)
        if rp is not None:
            return rp
        rp = urllib.robotparser.RobotFileParser(host + "/robots.txt")
        unreachable = ["User-agent: *", "Disallow: /"] if self.robots_unreachable == "disallow" else []
        try:
            r, body = self._get_robots(host)
            if r.status_code in (401, 403):
                rp.parse(["User-agent: *", "Disallow: /"])
            elif r.status_code >= 500:
                rp.parse(unreachable)
            elif r.status_code >= 400:
                rp.parse([])  # no robots.txt: everything is allowed
            else:
                rp.parse(body[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace").splitlines())
        except httpx.HTTPError:
            rp.parse(unreachable)
        self._robots[host] = rp
        self._next_at[host] = self.clock() + self.delay(url, rp)
        return rp

    def _get_robots(self, host: str) -> tuple[httpx.Response, bytes]:
        """GET robots.txt (its first :data:`ROBOTS_MAX_BYTES`), retrying a connection that fails to open
        ``robots_retries`` times (1 s, 2 s, ... apart): a server that is starting, or a brief network error,
        should not close a whole host."""
        for attempt in range(self.robots_retries + 1):
            try:
                self.requests += 1
                with self.client.stream("GET", host + "/robots.txt", follow_redirects=True,
                                        headers={"User-Agent": self.user_agent}) as r:
                    body = bytearray()
                    if r.status_code < 300:
                        for chunk in r.iter_bytes():
                            body += chunk
                            if len(body) >= ROBOTS_MAX_BYTES:
                                break  # RFC 9309: parse at least the first 500 KiB, the rest may be ignored
                return r, bytes(body)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if attempt == self.robots_retries:
                    raise
                self.sleep(float(2 ** attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def allowed(self, url: str) -> bool:
        """Whether robots.txt of the URL's host lets our user agent fetch it."""
        return self.robots(url).can_fetch(self.user_agent, url)

    def delay(self, url: str, rp: urllib.robotparser.RobotFileParser | None = None) -> float:
        """Seconds between two requests to the URL's host: ``delay_s``, or the host's Crawl-delay / Request-rate
        for our agent when larger (capped at ``max_crawl_delay_s``)."""
        rp = rp or self.robots(url)
        asked = 0.0
        crawl_delay = rp.crawl_delay(self.user_agent)
        if crawl_delay:
            asked = float(crawl_delay)
        rate = rp.request_rate(self.user_agent)
        if rate and rate.requests:
            asked = max(asked, rate.seconds / rate.requests)
        return max(self.delay_s, min(asked, self.max_crawl_delay_s))

    def _wait_turn(self, url: str) -> None:
        host = host_of(url)
        wait = self._next_at.get(host, 0.0) - self.clock()
        if wait > 0:
            self.sleep(wait)
        self._next_at[host] = self.clock() + self.delay(url)

    # --- fetching ----------------------------------------------------------------------------------------------

    def fetch(self, url: str, *, headers: Mapping[str, str] | None = None,
              accept: Callable[[str], bool] | None = None, scope: Callable[[str], bool] | None = None) -> Fetched:
        """GET ``url`` (see the module docstring). ``accept(content_type)`` says whether to read a body;
        ``scope(url)`` whether a URL (the first one, or a redirect's target) may be requested at all."""
        current, seen = url, {url}
        redirects: list[str] = []
        while True:
            if urlsplit(current).scheme not in ("http", "https"):
                return Fetched(url, "error", current, redirects=redirects, detail="not an http(s) URL")
            if scope is not None and not scope(current):
                return Fetched(url, "off_scope", current, redirects=redirects,
                               detail="outside the allowed site" + (" (after a redirect)" if redirects else ""))
            if not self.allowed(current):
                return Fetched(url, "disallowed", current, redirects=redirects,
                               detail="robots.txt disallows this URL for our user agent")
            self._wait_turn(current)
            try:
                result = self._get(url, current, headers, accept, redirects)
            except httpx.HTTPError as e:
                return Fetched(url, "error", current, redirects=redirects, detail=f"{type(e).__name__}: {e}")
            if isinstance(result, Fetched):
                return result
            redirects.append(current)
            current = result
            if current in seen or len(redirects) > self.max_redirects:
                return Fetched(url, "redirect_loop", current, redirects=redirects,
                               detail=f"more than {self.max_redirects} redirects or a loop")
            seen.add(current)

    def _get(self, url: str, current: str, headers: Mapping[str, str] | None, accept: Callable[[str], bool] | None,
             redirects: list[str]) -> Fetched | str:
        """One request: the Fetched result, or the URL a redirect points to."""
        request = self.client.build_request("GET", current, headers={"User-Agent": self.user_agent,
                                                                      **(headers or {})})
        self.requests += 1
        response = self.client.send(request, stream=True, follow_redirects=False)
        try:
            code = response.status_code
            location = response.headers.get("Location")
            if 300 <= code < 400 and code != 304 and location:
                return urljoin(current, location.strip())
            ctype = response.headers.get("Content-Type", "")
            done = Fetched(url, "ok", current, code, content_type=ctype, headers=httpx.Headers(response.headers),
                           redirects=redirects)
            if code == 304:
                done.status = "not_modified"
                return done
            if code >= 300:
                done.status, done.detail = "http_error", f"HTTP {code}"
                return done
            if accept is not None and not accept(ctype):
                done.status, done.detail = "wrong_type", f"Content-Type {ctype or 'missing'}"
                return done
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > self.max_bytes:
                done.status, done.detail = "too_large", f"Content-Length {length} over {self.max_bytes} bytes"
                return done
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    done.status, done.detail = "too_large", f"response over {self.max_bytes} bytes"
                    return done
            done.content = bytes(body)
            return done
        finally:
            response.close()
