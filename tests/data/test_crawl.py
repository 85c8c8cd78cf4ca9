"""The crawler (issue 23): robots.txt obeyed (a disallowed URL is never requested), nothing fetched outside the
site, redirects re-checked, 404 / non-HTML / oversized responses skipped without downloading them, duplicates
dropped, languages tagged, the JSONL written atomically. Against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tuneforge.cli import main
from tuneforge.data.crawl import USER_AGENT, CrawlOptions, Fetcher, crawl, crawl_to_file

ARTICLE = "<p>Quarterly earnings rose as the market rallied on strong bank results and lower rates.</p>"
HUGE_TOTAL = 24 * 1024 * 1024


def page(body: str, title: str = "") -> bytes:
    return f"<html><head><title>{title}</title></head><body>{body}</body></html>".encode()


class Site:
    """A tiny website: what it serves, and every request it got (path, user agent) and bytes it sent."""

    def __init__(self, other: str = "") -> None:
        self.requests: list[tuple[str, str]] = []
        self.huge_sent = 0
        self.pages: dict[str, tuple[int, dict[str, str], bytes]] = {
            "/robots.txt": (200, {"Content-Type": "text/plain"},
                            b"User-agent: *\nDisallow: /private/\n\nUser-agent: BadBot\nDisallow: /\n"),
            "/": (200, {}, page(
                ARTICLE + '<a href="/a.html">a</a> <a href="/private/secret.html">secret</a> '
                '<a href="/go-b">b</a> <a href="/go-out">out</a> <a href="/go-private">p</a> '
                '<a href="/missing.html">404</a> <a href="/huge.html">huge</a> <a href="/big.html">big</a> '
                '<a href="/report.pdf">pdf</a> <a href="/logo.png">png</a> <a href="/dup.html">dup</a> '
                '<a href="/near.html">near</a> <a href="/zh.html">zh</a> <a href="/a.html#part">frag</a> '
                f'<a href="{other}/elsewhere.html">elsewhere</a> <a rel="nofollow" href="/nofollow.html">nf</a>',
                "Home")),
            "/a.html": (200, {}, page("<p>The central bank held rates steady and signalled two cuts next year, "
                                      "lifting shares of regional lenders.</p>", "A")),
            "/b.html": (200, {}, page("<p>Oil prices fell for a third day as inventories grew more than "
                                      "analysts expected.</p>", "B")),
            "/go-b": (302, {"Location": "/b.html"}, b""),
            "/go-out": (301, {"Location": f"{other}/landing.html"}, b""),
            "/go-private": (302, {"Location": "/private/secret.html"}, b""),
            "/private/secret.html": (200, {}, page("<p>secret</p>")),
            "/report.pdf": (200, {"Content-Type": "application/pdf"}, b"%PDF-1.4 " + b"x" * 200_000),
            "/logo.png": (200, {"Content-Type": "image/png"}, b"\x89PNG" + b"\0" * 50_000),
            "/big.html": (200, {"Content-Length": str(50_000_000)}, b""),  # says it is too big: never read
            "/dup.html": (200, {}, page("<p>The central bank held rates steady and signalled two cuts next year, "
                                        "lifting shares of regional lenders.</p>", "A copy")),
            "/near.html": (200, {}, page("<p>THE CENTRAL BANK HELD RATES STEADY, AND SIGNALLED TWO CUTS NEXT "
                                         "YEAR - LIFTING SHARES OF REGIONAL LENDERS!</p>", "Shouting")),
            "/zh.html": (200, {"Content-Type": "text/html; charset=utf-8"},
                         page("<p>央行维持利率不变，并暗示明年将两次降息，地区银行股价随之上涨。</p>", "中文")),
            "/nofollow.html": (200, {}, page("<p>not followed</p>")),
        }


def serve(site: Site) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            site.requests.append((self.path, self.headers.get("User-Agent", "")))
            if self.path == "/huge.html":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Connection", "close")
                self.end_headers()
                chunk = b"<p>" + b"filler text " * 5000 + b"</p>"
                try:
                    while site.huge_sent < HUGE_TOTAL:
                        self.wfile.write(chunk)
                        site.huge_sent += len(chunk)
                except OSError:
                    pass  # the client stopped reading: what this test wants
                return
            status, headers, body = site.pages.get(self.path, (404, {}, b"not found"))
            self.send_response(status)
            headers = {"Content-Type": "text/html", **headers}
            headers.setdefault("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if headers["Content-Length"] == str(len(body)):
                with contextlib.suppress(OSError):  # a body the client chose not to read (not HTML)
                    self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def sites() -> Iterator[tuple[Site, str, Site]]:
    """The site under test, its URL, and another site on another port it links and redirects to."""
    other = Site()
    other_server, other_url = serve(other)
    site = Site(other=other_url)
    server, url = serve(site)
    yield site, url, other
    for s in (server, other_server):
        s.shutdown()
        s.server_close()


def test_crawl_obeys_robots_stays_on_site_and_skips_what_is_not_html(sites, tmp_path: Path) -> None:
    site, url, other = sites
    out = tmp_path / "crawl.jsonl"
    options = CrawlOptions(max_pages=50, delay_s=0, max_bytes=200_000)
    summary = crawl_to_file([url + "/"], out, options)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_url = {r["url"]: r for r in records}
    assert set(by_url) == {f"{url}/", f"{url}/a.html", f"{url}/b.html", f"{url}/zh.html"}
    assert set(records[0]) == {"text", "url", "title", "lang", "fetched_at"}
    assert by_url[f"{url}/a.html"]["title"] == "A" and "central bank" in by_url[f"{url}/a.html"]["text"]
    assert by_url[f"{url}/zh.html"]["lang"] == "zh" and by_url[f"{url}/a.html"]["lang"] == "en"
    assert "央行" in by_url[f"{url}/zh.html"]["text"]  # decoded with the charset it was sent in

    paths = [p for p, _ in site.requests]
    assert not [p for p in paths if p.startswith("/private/")]  # neither the link nor the redirect to it
    assert other.requests == []  # neither the link elsewhere nor the redirect there
    assert "/nofollow.html" not in paths
    assert paths.count("/robots.txt") == 1 and paths.count("/a.html") == 1  # the #fragment is the same page
    assert all(ua == USER_AGENT and ua.startswith("TuneForge/") for _, ua in site.requests)
    assert site.huge_sent < HUGE_TOTAL  # the download stopped at --max-bytes

    skipped = summary.skipped
    assert skipped["disallowed"] == 2 and skipped["off_scope"] == 1 and skipped["http_error"] == 1
    assert skipped["too_large"] == 2 and skipped["wrong_type"] == 2
    assert skipped["duplicate"] == 1 and skipped["near_duplicate"] == 1
    assert summary.written == 4 and summary.off_site_links == 1
    assert summary.examples["http_error"] == f"{url}/missing.html"
    assert [p.name for p in tmp_path.iterdir()] == ["crawl.jsonl"]  # no temporary file left


def test_max_pages_language_filter_and_the_command(sites, tmp_path: Path, capsys) -> None:
    site, url, _ = sites
    out = tmp_path / "zh.jsonl"
    code = main(["data", "crawl", url + "/", "-o", str(out), "--delay", "0", "--lang", "zh", "--max-pages", "1"])
    assert code == 0, capsys.readouterr().err
    (record,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert record["url"] == f"{url}/zh.html" and record["lang"] == "zh"
    printed = capsys.readouterr().out
    assert "not in --lang" in printed and "disallowed by robots.txt" in printed
    assert not any(p.startswith("/private/") for p, _ in site.requests)

    few = list(crawl([url + "/"], CrawlOptions(max_pages=2, delay_s=0)))
    assert len(few) == 2


def test_nothing_written_when_robots_disallows_everything(sites, tmp_path: Path, capsys) -> None:
    site, url, _ = sites
    site.pages["/robots.txt"] = (200, {}, b"User-agent: TuneForge\nDisallow: /\n")
    code = main(["data", "crawl", url + "/", "-o", str(tmp_path / "x.jsonl"), "--delay", "0"])
    assert code == 1
    assert [p for p, _ in site.requests] == ["/robots.txt"]
    assert "no page was written" in capsys.readouterr().err


# --- the fetcher on its own, with a mock transport ------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(round(s, 6))
        self.now += s


def mock(robots: tuple[int, str], seen: list[httpx.Request], pages: dict[str, httpx.Response] | None = None
         ) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/robots.txt":
            return httpx.Response(robots[0], text=robots[1])
        return (pages or {}).get(request.url.path) or httpx.Response(200, html="<p>hello</p>")
    return httpx.MockTransport(handler)


def test_crawl_delay_spaces_requests_per_host() -> None:
    t, seen = FakeTime(), []
    f = Fetcher(transport=mock((200, "User-agent: *\nCrawl-delay: 2\n"), seen), clock=t.clock, sleep=t.sleep)
    for path in ("/1", "/2", "/3"):
        assert f.fetch("http://news.example" + path).ok
    assert t.sleeps == [2.0, 2.0, 2.0]  # after robots.txt, and between pages
    t2 = FakeTime()
    g = Fetcher(transport=mock((200, "User-agent: *\nCrawl-delay: 1\n"), []), delay_s=3, clock=t2.clock,
                sleep=t2.sleep)
    g.fetch("http://a.example/1")
    g.fetch("http://b.example/1")  # another host: its own pace
    assert t2.sleeps == [3.0, 3.0]
    capped = Fetcher(transport=mock((200, "User-agent: *\nCrawl-delay: 3600\n"), []), max_crawl_delay_s=5)
    assert capped.delay("http://c.example/") == 5


@pytest.mark.parametrize(("robots", "allowed"), [((404, ""), True), ((403, ""), False), ((503, ""), False),
                                                 ((200, "User-agent: TuneForge\nDisallow: /x\n"), False),
                                                 ((200, "User-agent: other\nDisallow: /\n"), True)])
def test_robots_answers(robots, allowed) -> None:
    seen: list[httpx.Request] = []
    f = Fetcher(transport=mock(robots, seen))
    res = f.fetch("http://news.example/x")
    assert res.ok is allowed
    assert [r.url.path for r in seen] == (["/robots.txt", "/x"] if allowed else ["/robots.txt"])
    assert all(r.method == "GET" for r in seen)  # no HEAD probes either


def test_redirect_loops_and_feeds() -> None:
    seen: list[httpx.Request] = []
    pages = {"/loop": httpx.Response(302, headers={"Location": "/loop2"}),
             "/loop2": httpx.Response(302, headers={"Location": "/loop"}),
             "/feed": httpx.Response(200, headers={"Content-Type": "application/rss+xml"}, content=(
                 b"<rss><channel><item><title>A</title><link>/story/1</link></item>"
                 b"<item><title>B</title><link>http://elsewhere.example/2</link></item></channel></rss>")),
             "/story/1": httpx.Response(200, html="<p>Shares of the chip maker jumped after results beat "
                                                  "forecasts.</p>")}
    f = Fetcher(transport=mock((404, ""), seen, pages))
    assert f.fetch("http://news.example/loop").status == "redirect_loop"
    records = list(crawl(["http://news.example/feed"], CrawlOptions(delay_s=0), fetcher=f))
    assert [r["url"] for r in records] == ["http://news.example/story/1"]
    assert not any(r.url.host == "elsewhere.example" for r in seen)


def test_bad_options_are_reported_together() -> None:
    with pytest.raises(Exception) as e:
        list(crawl(["ftp://x", "http://ok.example/"], CrawlOptions(max_pages=0, delay_s=-1)))
    text = str(e.value)
    assert "max_pages" in text and "delay" in text and "ftp://x" in text


def test_robots_txt_is_retried_while_the_server_starts_then_closes_the_host() -> None:
    t, tries = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        tries.append(request.url.path)
        if request.url.path == "/robots.txt" and tries.count("/robots.txt") < 3:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(404 if request.url.path == "/robots.txt" else 200, html="<p>up</p>")

    f = Fetcher(transport=httpx.MockTransport(handler), clock=t.clock, sleep=t.sleep)
    assert f.fetch("http://starting.example/page").ok
    assert t.sleeps == [1.0, 2.0] and tries == ["/robots.txt"] * 3 + ["/page"]

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    g = Fetcher(transport=httpx.MockTransport(down), robots_retries=1, sleep=lambda s: None)
    assert g.fetch("http://down.example/page").status == "disallowed"  # RFC 9309: unreachable means disallow
