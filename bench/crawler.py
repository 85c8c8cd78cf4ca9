"""Benchmark of `tuneforge data crawl` (issue 23): pages per second against a local HTTP server, robots.txt obeyed,
nothing fetched outside the site.

A generated site of N article pages (default 200, about 2 KB of text each, every page linking to the next three,
to a page robots.txt disallows and to a second server on another port) is served by `http.server` in a thread on
127.0.0.1. The crawler starts at page 0 with --delay 0 and --max-pages N. Reported (each the median of --repeat
runs after a warm-up): pages/s of the whole crawler (fetch, trafilatura extraction, dedupe, language tag, JSONL)
and of the fetcher alone on the same URLs (where the time goes); and the disallowed and off-site requests the
servers saw (both must be 0).

    python bench/crawler.py [--pages 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_result  # noqa: E402

WORDS = ["market", "shares", "bank", "rates", "earnings", "quarter", "investors", "growth", "inflation", "bond",
         "yields", "revenue", "profit", "forecast", "analysts", "oil", "prices", "demand", "supply", "central",
         "policy", "trade", "exports", "currency", "dollar", "euro", "index", "stocks", "rally", "decline",
         "results", "guidance", "margin", "costs"]


def article(i: int, rng: random.Random) -> str:
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."
                 for _ in range(25)]
    return f"<p>Article {i}.</p>" + "".join(f"<p>{s}</p>" for s in sentences)


def serve(log: list[str], pages: dict[str, bytes]) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between them

        def do_GET(self) -> None:  # noqa: N802
            log.append(self.path)
            body = pages.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/plain" if self.path == "/robots.txt" else "text/html")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the median is reported")
    args = ap.parse_args()
    from tuneforge.data.crawl import CrawlOptions, Fetcher, crawl_to_file
    from tuneforge.data.crawl.extract import detect_language, extract_text

    other_log: list[str] = []
    other, other_url = serve(other_log, {"/": b"<p>elsewhere</p>"})
    log: list[str] = []
    pages: dict[str, bytes] = {"/robots.txt": b"User-agent: *\nDisallow: /private/\n",
                               "/private/x.html": b"<p>secret</p>"}
    site, url = serve(log, pages)
    rng = random.Random(0)
    n = args.pages
    for i in range(n):
        links = "".join(f'<a href="/p/{j}.html">next</a>' for j in range(i + 1, min(n, i + 4)))
        links += f'<a href="/private/x.html">private</a><a href="{other_url}/">elsewhere</a>'
        pages[f"/p/{i}.html"] = f"<html><head><title>Page {i}</title></head><body>{article(i, rng)}{links}" \
                                f"</body></html>".encode()
    extract_text(pages["/p/0.html"].decode(), url)  # load trafilatura and the language model before timing
    detect_language("warm up")
    crawl_times, fetch_times = [], []
    for _ in range(args.repeat):
        log.clear()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            summary = crawl_to_file([f"{url}/p/0.html"], Path(tmp) / "crawl.jsonl",
                                    CrawlOptions(max_pages=n, delay_s=0))
            crawl_times.append(time.perf_counter() - t0)
            written = sum(1 for _ in (Path(tmp) / "crawl.jsonl").open(encoding="utf-8"))
        crawl_log = list(log)
    for _ in range(args.repeat):
        with Fetcher(delay_s=0) as f:
            t0 = time.perf_counter()
            ok = sum(f.fetch(f"{url}/p/{i}.html").ok for i in range(n))
            fetch_times.append(time.perf_counter() - t0)
    crawl_s, fetch_s = statistics.median(crawl_times), statistics.median(fetch_times)
    for s in (site, other):
        s.shutdown()
        s.server_close()
    load = os.getloadavg()
    rows = [
        {"what": "crawler: fetch + extract + dedupe + lang + JSONL", "pages": written, "seconds": crawl_s,
         "pages_per_s": written / crawl_s},
        {"what": "fetcher alone (robots.txt, pacing, streaming)", "pages": ok, "seconds": fetch_s,
         "pages_per_s": ok / fetch_s},
    ]
    print_table(rows, ["what", "pages", "seconds", "pages_per_s"])
    checks = {"requests": summary.requests, "robots_txt_requests": crawl_log.count("/robots.txt"),
              "disallowed_requests": sum(p.startswith("/private/") for p in crawl_log),
              "off_site_requests": len(other_log), "skipped": dict(summary.skipped),
              "off_site_links_not_followed": summary.off_site_links}
    print(checks, f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    assert checks["disallowed_requests"] == 0 and checks["off_site_requests"] == 0 and written == n
    write_result("crawler", {"pages": n, "delay_s": 0, "repeat": args.repeat, "rows": rows, "checks": checks,
                             "crawl_seconds_each": [round(x, 3) for x in crawl_times],
                             "fetch_seconds_each": [round(x, 3) for x in fetch_times],
                             "load_average": [round(x, 2) for x in load], "machine": machine(),
                             "command": f"python bench/crawler.py --pages {n}"})


if __name__ == "__main__":
    main()
