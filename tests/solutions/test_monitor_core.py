"""The monitor's pure parts: detection, entities, sentiment routing, ingest (files, feeds, pages, polling,
de-duplication), notification channels, charts and the replay scoring."""

from __future__ import annotations

import hashlib
import hmac
import json
import socketserver
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tuneforge.errors import ConfigError, DataError
from tuneforge.solutions.monitor.classify import SentimentClassifier, detect_language, polarity, topic_of
from tuneforge.solutions.monitor.detect import Observation, RuleParams, detect_stream, evaluate
from tuneforge.solutions.monitor.entities import EntityMatcher, WatchEntry
from tuneforge.solutions.monitor.ingest import (
    Deduplicator,
    Poller,
    RawItem,
    SourceState,
    page_item,
    parse_feed,
    read_items,
)
from tuneforge.solutions.monitor.notify import SmtpSettings, send_email, send_webhook, sign
from tuneforge.solutions.monitor.replay import (
    Burst,
    Stream,
    StreamItem,
    build_stream,
    detect,
    pool_scores,
    score_alerts,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _background(hours: int = 24 * 7, every_min: int = 60, neg_every: int = 6) -> list[Observation]:
    """One item an hour, one in six negative."""
    return [Observation(T0 + timedelta(minutes=k * every_min), k % neg_every == 0, f"b{k}")
            for k in range(hours * 60 // every_min)]


# ------------------------------------------------------------------------------------------------ detection
def test_negative_share_fires_on_a_burst_and_lists_the_negative_items():
    bg = _background()
    end = bg[-1].at
    burst = [Observation(end + timedelta(minutes=5 * k + 1), True, f"n{k}") for k in range(6)]
    rule = RuleParams(window_minutes=120, baseline_minutes=7 * 24 * 60, threshold=3, min_items=4)
    d = evaluate(bg + burst, rule, burst[-1].at)
    assert d is not None and d.metric == "negative_share"
    assert d.value > 0.7 and d.expected < 0.25 and d.z >= 3
    assert set(d.item_ids) >= {f"n{k}" for k in range(6)}
    assert all(i.startswith("n") or int(i[1:]) % 6 == 0 for i in d.item_ids)  # only negative items
    assert evaluate(bg, rule, end) is None  # the steady stream alone is quiet


def test_min_items_and_min_increase_hold_back_thin_windows():
    bg = _background()
    end = bg[-1].at
    two = [Observation(end + timedelta(minutes=k + 1), True, f"n{k}") for k in range(2)]
    assert evaluate(bg + two, RuleParams(window_minutes=30, min_items=3), two[-1].at) is None
    assert evaluate(bg + two, RuleParams(window_minutes=30, min_items=2, threshold=2), two[-1].at) is not None
    # a window as negative as the baseline is no news, however many items it has
    steady = [Observation(end + timedelta(minutes=k + 1), k % 6 == 0, f"s{k}") for k in range(60)]
    assert evaluate(bg + steady, RuleParams(window_minutes=60, min_items=5, threshold=1), steady[-1].at) is None


def test_volume_metrics_compare_with_the_baseline_rate():
    bg = _background()
    end = bg[-1].at
    flood = [Observation(end + timedelta(minutes=k + 1), False, f"v{k}") for k in range(12)]
    vol = RuleParams(metric="volume", window_minutes=60, threshold=3, min_items=5)
    d = evaluate(bg + flood, vol, flood[-1].at)
    assert d is not None and d.value >= 12 and d.expected == pytest.approx(1.0, abs=0.2)
    # the same flood is no negative-volume anomaly: none of it is negative
    assert evaluate(bg + flood, RuleParams(metric="negative_volume", window_minutes=60, min_items=3),
                    flood[-1].at) is None
    negs = [Observation(o.at, True, o.item_id) for o in flood]
    assert evaluate(bg + negs, RuleParams(metric="negative_volume", window_minutes=60, min_items=3),
                    flood[-1].at) is not None


def test_detect_stream_respects_the_cooldown_and_evaluates_only_given_times():
    bg = _background()
    end = bg[-1].at
    burst = [Observation(end + timedelta(minutes=5 * k + 1), True, f"n{k}") for k in range(20)]
    rule = RuleParams(window_minutes=60, min_items=4, cooldown_minutes=24 * 60)
    found = detect_stream(bg + burst, rule)
    assert len(found) == 1 and found[0].at >= burst[0].at
    no_cooldown = detect_stream(bg + burst, RuleParams(window_minutes=60, min_items=4, cooldown_minutes=0))
    assert len(no_cooldown) > 5
    assert detect_stream(bg + burst, rule, last_alert=burst[0].at) == []  # still cooling down
    only_first = detect_stream(bg + burst, RuleParams(window_minutes=60, min_items=4, cooldown_minutes=0),
                               at=[burst[0].at])
    assert only_first == []  # one negative item is not enough at that time


def test_rule_params_report_every_bad_field():
    with pytest.raises(ConfigError) as e:
        RuleParams(metric="sentiment", window_minutes=0, threshold=-1)
    text = str(e.value)
    assert "metric" in text and "window_minutes" in text and "threshold" in text


# ------------------------------------------------------------------------------------------------- entities
def test_watch_list_matching_rules():
    m = EntityMatcher([WatchEntry("AAPL", ["Apple", "苹果"]), WatchEntry("贵州茅台", ["茅台", "600519"]),
                       WatchEntry("ALL", ["Allstate"]), WatchEntry("GS", ["Goldman Sachs"])])
    assert m.match("Apple beats estimates; $aapl up 3%") == ["AAPL"]
    assert m.match("pineapple prices rise") == []
    assert m.match("all stocks fell") == []  # a ticker that is a word matches only in capitals
    assert m.match("ALL raises dividend; goldman sachs upgrades it") == ["ALL", "GS"]
    assert m.match("贵州茅台(600519)股价下跌，苹果公司也跌了") == ["贵州茅台", "AAPL"]
    assert m.match("code 6005190 is another stock") == []
    assert m.match("$TSLA and $NVDA rally") == ["TSLA", "NVDA"]  # cashtags off the list
    assert EntityMatcher([WatchEntry("AAPL")], cashtags=False).match("$TSLA rallies") == []


def test_ner_adds_org_mentions():
    def ner(texts: list[str]) -> list[dict]:
        return [{"entities": [{"type": "ORG", "text": "Acme Corp"}, {"type": "PER", "text": "John"}]} for _ in texts]

    assert EntityMatcher(ner=ner)(["John of Acme Corp quits"]) == [["Acme Corp"]]


# -------------------------------------------------------------------------------------------------- classify
def test_polarity_language_and_topic():
    assert [polarity(x) for x in ("Bearish", "bullish", "neutral", "negative", "positive", "other")] == \
        ["negative", "positive", "neutral", "negative", "positive", "neutral"]
    assert detect_language("贵州茅台股价大跌") == "zh"
    assert detect_language("$AAPL 苹果 falls after earnings miss in a big way") == "en"
    assert detect_language("") == "en"
    assert topic_of("Goldman downgrades Tesla, cuts price target") == "analyst"
    assert topic_of("公司发布年报，净利润增长") == "earnings"
    assert topic_of("nothing here") is None
    assert topic_of("corporates rally") is None  # 'rates' only as a word


def test_classifier_routes_by_language_and_scores_polarity():
    calls: dict[str, list[str]] = {"en": [], "zh": []}

    def en(texts):
        calls["en"] += texts
        return [{"label": "bearish", "score": 0.7, "scores": {"bearish": 0.7, "bullish": 0.1, "neutral": 0.2}}
                for _ in texts]

    def zh(texts):
        calls["zh"] += texts
        return [{"label": "positive", "score": 0.9, "scores": {"positive": 0.9, "negative": 0.1}} for _ in texts]

    out = SentimentClassifier(en, zh)(["$AAPL cut to sell", "茅台业绩大增", "Fed holds rates"])
    assert calls == {"en": ["$AAPL cut to sell", "Fed holds rates"], "zh": ["茅台业绩大增"]}
    assert [o.polarity for o in out] == ["negative", "positive", "negative"]
    assert out[0].score == pytest.approx(-0.6) and out[1].score == pytest.approx(0.8)
    assert out[1].lang == "zh" and out[1].topic == "earnings" and out[2].topic == "macro"
    # one model serves both languages when there is no Chinese one
    assert SentimentClassifier(en)(["茅台"])[0].label == "bearish"
    with pytest.raises(ConfigError):
        SentimentClassifier(None, None)


# ---------------------------------------------------------------------------------------------------- ingest
def test_read_items_from_jsonl_and_csv_and_report_every_bad_line(tmp_path):
    good = tmp_path / "a.jsonl"
    good.write_text(json.dumps({"text": "<p>$AAPL up</p>", "published_at": "2024-03-01T10:00:00Z",
                                "url": "http://x/1"}) + "\n\n" + json.dumps({"title": "Only a title"}) + "\n")
    items = read_items(good)
    assert items[0].text == "$AAPL up" and items[0].published_at == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert items[1].full_text == "Only a title" and items[1].source == "file:a.jsonl"
    csv_file = tmp_path / "b.csv"
    csv_file.write_text("text,published_at\nhello,2024-03-01 09:00\n")
    assert read_items(csv_file)[0].published_at == datetime(2024, 3, 1, 9, tzinfo=UTC)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": ""}\nnot json\n{"text": "x", "published_at": "yesterday"}\n')
    with pytest.raises(DataError) as e:
        read_items(bad)
    assert len(e.value.problems) == 3 and [p.line for p in e.value.problems] == [1, 2, 3]
    assert e.value.problems[2].field == "published_at"


RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>News</title>
<item><title>Tesla recalls cars</title><link>/a/1</link><guid>id-1</guid>
<description>&lt;b&gt;Tesla&lt;/b&gt; recalls 10,000 cars.</description>
<pubDate>Fri, 01 Mar 2024 10:00:00 GMT</pubDate></item>
<item><title>Apple up</title><link>http://news.example/a/2</link></item></channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>F</title>
<entry><title>茅台业绩大增</title><id>urn:1</id><link href="http://x/zh/1"/><updated>2024-03-01T08:00:00+08:00</updated>
<summary>贵州茅台发布年报</summary></entry></feed>"""

RDF = """<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<item><title>JPM beats</title><link>http://x/3</link><description>JPMorgan beats</description>
<dc:date>2024-03-02T00:00:00Z</dc:date></item></rdf:RDF>"""


def test_parse_rss_atom_and_rdf():
    rss = parse_feed(RSS, url="http://news.example/feed")
    assert [i.title for i in rss] == ["Tesla recalls cars", "Apple up"]
    assert rss[0].text == "Tesla recalls 10,000 cars." and rss[0].url == "http://news.example/a/1"
    assert rss[0].guid == "id-1" and rss[0].published_at == datetime(2024, 3, 1, 10, tzinfo=UTC)
    atom = parse_feed(ATOM.encode())
    assert atom[0].title == "茅台业绩大增" and atom[0].published_at == datetime(2024, 3, 1, 0, tzinfo=UTC)
    assert atom[0].url == "http://x/zh/1" and atom[0].guid == "urn:1"
    rdf = parse_feed(RDF)
    assert rdf[0].title == "JPM beats" and rdf[0].published_at == datetime(2024, 3, 2, tzinfo=UTC)
    with pytest.raises(DataError, match="not an RSS/Atom feed"):
        parse_feed("<html><body>hi", url="http://x")
    with pytest.raises(DataError, match="not an RSS or Atom root"):
        parse_feed("<html><body>hi</body></html>", url="http://x")


def test_page_item_keeps_the_visible_article_text():
    html = ("<html><head><title>Fed holds</title><script>var x=1;</script></head><body><nav>Home | Markets</nav>"
            "<article><p>The Fed held rates.</p><p>Stocks&nbsp;rose.</p></article><footer>(c) 2024</footer>"
            "</body></html>")
    item = page_item(html, url="http://x/p")
    assert item.title == "Fed holds" and item.text == "The Fed held rates. Stocks rose."
    assert item.guid == "http://x/p"


def test_deduplicator_drops_repeats_by_url_guid_text_and_near_text():
    d = Deduplicator(threshold=0.8)
    story = "Tesla recalls 10,000 Model Y cars over faulty seat belts, the company said on Friday."
    assert not d.seen(RawItem(story, url="http://a/1", guid="g1"))
    assert d.why_duplicate(RawItem("other text", url="http://a/1")) == "url"
    assert d.why_duplicate(RawItem("other text", guid="g1")) == "guid"
    assert d.why_duplicate(RawItem(story.upper() + " https://t.co/xyz")) == "text"
    assert d.why_duplicate(RawItem(story.replace("Friday", "Friday - Reuters"))) == "near"
    assert d.why_duplicate(RawItem("Apple raises its dividend by 4 percent after record iPhone sales.")) is None
    assert len(d.filter([RawItem("new story one, quite different"), RawItem("new story one, quite different!")])) == 1


def test_deduplicator_forgets_beyond_its_memory():
    d = Deduplicator(threshold=0.8, memory=2)
    a = "Tesla recalls 10,000 Model Y cars over faulty seat belts, the company said on Friday."
    d.remember(RawItem(a))
    d.remember(RawItem("Apple raises its dividend by 4 percent after record iPhone sales."))
    assert d.why_duplicate(RawItem(a + " (Reuters)")) == "near"
    d.remember(RawItem("JPMorgan beats estimates as trading revenue jumps in the second quarter."))
    assert d.why_duplicate(RawItem(a + " (Reuters)")) is None  # the Tesla story was forgotten
    assert d.why_duplicate(RawItem(a)) == "text"  # exact repeats are remembered longer (by hash)


def _site(robots: str | None, feed: str, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/robots.txt":
            return httpx.Response(404) if robots is None else httpx.Response(200, text=robots)
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304)
        return httpx.Response(200, content=feed.encode(), headers={"ETag": '"v1"',
                                                                     "Content-Type": "application/rss+xml"})
    return httpx.MockTransport(handler)


def test_poller_honours_robots_txt_and_conditional_get():
    seen: list[httpx.Request] = []
    now = [T0]
    poller = Poller(transport=_site(None, RSS, seen), clock=lambda: now[0])
    src = SourceState(url="http://news.example/feed", interval_s=600)
    first = poller.fetch(src)
    assert first.status == "ok" and len(first.items) == 2 and src.etag == '"v1"'
    assert first.items[1].published_at == T0  # undated item: the time it was seen
    assert seen[-1].headers["user-agent"].startswith("TuneForgeMonitor")
    assert poller.poll_due([src]) == []  # not due yet
    now[0] = T0 + timedelta(minutes=11)
    again = poller.poll_due([src])
    assert [r.status for r in again] == ["not_modified"] and seen[-1].headers["if-none-match"] == '"v1"'
    assert sum(r.url.path == "/robots.txt" for r in seen) == 1  # cached per host

    blocked = Poller(transport=_site("User-agent: *\nDisallow: /feed\n", RSS, seen := []))
    res = blocked.fetch(SourceState(url="http://news.example/feed"))
    assert res.status == "disallowed" and [r.url.path for r in seen] == ["/robots.txt"]
    other = Poller(transport=_site("User-agent: TuneForgeMonitor\nDisallow: /\n", RSS, []))
    assert other.fetch(SourceState(url="http://news.example/feed")).status == "disallowed"


def test_poller_reports_http_errors_and_bad_feeds():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/robots.txt":
            return httpx.Response(404)
        return httpx.Response(500) if request.url.path == "/down" else httpx.Response(200, text="<html>no feed")

    p = Poller(transport=httpx.MockTransport(handler))
    assert p.fetch(SourceState(url="http://x/down")).status == "error"
    bad = p.fetch(SourceState(url="http://x/page"))
    assert bad.status == "error" and "feed" in bad.detail


# ---------------------------------------------------------------------------------------------------- notify
def test_webhook_is_signed_and_retried_on_server_errors():
    got: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(503 if len(got) < 2 else 204)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    d = send_webhook("http://hook/x", {"entity": "AAPL"}, secret="s3cret", client=client, backoff_s=0)
    assert d.ok and len(got) == 2
    req = got[-1]
    ts = req.headers["x-tuneforge-timestamp"]
    expected = "sha256=" + hmac.new(b"s3cret", ts.encode() + b"." + req.content, hashlib.sha256).hexdigest()
    assert req.headers["x-tuneforge-signature"] == expected == sign("s3cret", req.content, ts)
    assert json.loads(req.content) == {"entity": "AAPL"}

    refused: list[httpx.Request] = []
    c2 = httpx.Client(transport=httpx.MockTransport(lambda r: refused.append(r) or httpx.Response(400)))
    d2 = send_webhook("http://hook/x", {}, client=c2, retries=3, backoff_s=0)
    assert not d2.ok and d2.detail == "HTTP 400" and len(refused) == 1  # a 4xx is not retried
    assert "x-tuneforge-signature" not in refused[0].headers


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to receive one message (no STARTTLS offered)."""

    def handle(self) -> None:
        self.wfile.write(b"220 fake ESMTP\r\n")
        data, in_data = [], False
        while line := self.rfile.readline():
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    self.server.messages.append(b"".join(data).decode())  # type: ignore[attr-defined]
                    self.wfile.write(b"250 queued\r\n")
                else:
                    data.append(line)
                continue
            cmd = line.decode().strip().upper()
            if cmd.startswith("EHLO"):
                self.wfile.write(b"250-fake\r\n250 SIZE 100000\r\n")
            elif cmd.startswith(("MAIL", "RCPT", "RSET", "NOOP")):
                self.wfile.write(b"250 ok\r\n")
            elif cmd == "DATA":
                in_data = True
                self.wfile.write(b"354 go ahead\r\n")
            elif cmd == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"502 no\r\n")


@pytest.fixture
def smtp_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.messages = []  # type: ignore[attr-defined]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


def test_email_goes_through_smtp(smtp_server):
    port = smtp_server.server_address[1]
    d = send_email(SmtpSettings(host="127.0.0.1", port=port, sender="mon@x"), ["a@x", "b@x"], "AAPL alert",
                   "negative share 0.8")
    assert d.ok, d.detail
    (msg,) = smtp_server.messages
    assert "Subject: AAPL alert" in msg and "To: a@x, b@x" in msg and "negative share 0.8" in msg
    down = send_email(SmtpSettings(host="127.0.0.1", port=1, timeout_s=2), ["a@x"], "s", "b")
    assert not down.ok and down.channel == "email"


# ------------------------------------------------------------------------------------------ charts & replay
def test_png_chart_and_console_bars():
    from tuneforge.solutions.monitor.charts import series_png, series_text

    series = [{"start": (T0 + timedelta(hours=h)).isoformat(), "count": c, "negative_share": ns,
               "mean_score": ms} for h, c, ns, ms in [(0, 3, 0.0, 0.5), (1, 0, None, None), (2, 4, 0.75, -0.6)]]
    png = series_png(series, title="AAPL", alerts=[T0 + timedelta(hours=2)])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    rows = series_text(series, width=20)
    assert rows[0][3].endswith("|" + "█" * 5) and rows[1][3] == "" and rows[2][3].startswith(" " * 4 + "█" * 6)
    assert rows[2][2] == "75%"


def test_replay_stream_is_seeded_and_scored():
    labels = (["bearish"] * 200 + ["neutral"] * 600 + ["bullish"] * 200)
    a = build_stream(labels, days=20, bursts=6, burst_size=8, seed=3)
    b = build_stream(labels, days=20, bursts=6, burst_size=8, seed=3)
    assert a.items == b.items and a.bursts == b.bursts
    assert len(a.items) == len(labels) and len(a.bursts) == 6
    burst_items = [it for it in a.items if it.burst is not None]
    assert len(burst_items) == 48 and all(labels[it.index] == "bearish" for it in burst_items)
    rule = RuleParams(window_minutes=240, min_items=4, min_increase=0.25, cooldown_minutes=360)
    res = score_alerts(a, detect(a, labels, rule), rule)
    assert res["recall"] >= 0.8 and res["precision"] >= 0.5 and res["delay_min_median"] < 240
    # labels that never say bearish find nothing
    blind = score_alerts(a, detect(a, ["neutral"] * len(labels), rule), rule)
    assert blind["recall"] == 0 and blind["alerts"] == 0
    with pytest.raises(ConfigError, match="bursts"):
        build_stream(labels, bursts=50, burst_size=8)


def test_score_alerts_counts_hits_misses_and_delay():
    from tuneforge.solutions.monitor.detect import Detection

    b0 = Burst("AAPL", T0, T0 + timedelta(minutes=60))
    b1 = Burst("TSLA", T0, T0 + timedelta(minutes=60))
    items = [StreamItem(k, "AAPL", T0 + timedelta(minutes=10 * k), burst=0) for k in range(6)]
    stream = Stream(items, [b0, b1], days=10, entities=["AAPL", "TSLA"])

    def det(at):
        return Detection(at=at, metric="negative_share", value=1, expected=0.1, z=5, window_items=3,
                         baseline_items=10)

    alerts = {"AAPL": [det(T0 + timedelta(minutes=25)), det(T0 + timedelta(days=3))], "TSLA": []}
    res = score_alerts(stream, alerts, RuleParams(window_minutes=60))
    assert res["precision"] == 0.5 and res["recall"] == 0.5
    assert res["delay_min_mean"] == 25 and res["delay_items_mean"] == 3
    assert res["false_alarms_per_day"] == pytest.approx(0.1)
    pooled = pool_scores([res, score_alerts(stream, {"AAPL": [], "TSLA": [det(T0 + timedelta(minutes=70))]},
                                            RuleParams(window_minutes=60))], days=10)
    assert pooled["bursts"] == 4 and pooled["alerts"] == 3 and pooled["precision"] == pytest.approx(2 / 3)
    assert pooled["recall"] == 0.5 and pooled["delay_min_median"] == pytest.approx((25 + 70) / 2)
