"""/v1/solutions/monitor on SQLite and PostgreSQL: push items, series and charts, rules and alerts delivered to a
webhook, sources, a real (tiny) sentiment model through the model cache, scopes, and tenant isolation."""

from __future__ import annotations

import json
import random
import shutil
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

import tests.api.conftest as api_fixtures
from tests.conftest import write_jsonl
from tests.service_support import make_settings
from tuneforge.store.db import utcnow
from tuneforge.store.models import Model
from tuneforge.store.tenants import authenticate

# the API suite's fixtures: an app on SQLite and on PostgreSQL
db_url, api = api_fixtures.db_url, api_fixtures.api


@pytest.fixture
def settings(db_url, tmp_path, tiny_bert):
    # this module's webhook receiver and feeds listen on loopback, which the server refuses by default
    return make_settings(tmp_path / "data", db_url, base_models={"tiny-bert": tiny_bert}, allow_private_urls=True)

BASE = "/v1/solutions/monitor"
T0 = datetime(2024, 3, 1, tzinfo=UTC)


WORDS = ["board", "dividend", "meeting", "supplier", "factory", "quarter", "report", "investors", "market", "chief",
         "officer", "plan", "product", "launch", "store", "service", "cloud", "chips", "deal", "europe", "asia", "bank",
         "loan", "bond", "rate", "office", "staff", "hiring", "data", "design", "budget", "review", "partner",
         "region", "energy", "retail", "phone", "software"]


def _background(entity: str = "AAPL", days: int = 3) -> list[dict]:
    """One item every two hours, one in six bearish; texts different enough not to be near-duplicates."""
    rng = random.Random(entity)
    items = []
    for k in range(days * 12):
        label = "bearish" if k % 6 == 0 else "neutral"
        items.append({"text": f"${entity} " + " ".join(rng.sample(WORDS, 6)),
                      "published_at": (T0 + timedelta(hours=2 * k)).isoformat(), "label": label})
    return items


def _burst(start: datetime, n: int = 6, entity: str = "AAPL") -> list[dict]:
    rng = random.Random(f"burst-{entity}-{start}")
    return [{"text": f"${entity} plunges: " + " ".join(rng.sample(WORDS, 6)), "label": "bearish",
             "url": f"http://news.example/{entity}/{start:%Y%m%d%H%M}/{k}",
             "published_at": (start + timedelta(minutes=10 * k)).isoformat()} for k in range(n)]


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hook():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_push_items_series_chart_and_duplicates(api):
    _, key = api.tenant()
    c = api.as_(key)
    r = c.post(f"{BASE}/watchlist", json={"name": "AAPL", "aliases": ["Apple"]})
    assert r.status_code == 200, r.text
    items = _background(days=2)
    items.append({"text": "Apple opens a new store", "label": "bullish", "topic": "retail",
                  "published_at": (T0 + timedelta(hours=5)).isoformat()})
    r = c.post(f"{BASE}/items", json={"items": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stored"] == len(items) and body["alerts"] == []
    repeats = items[:3] + [{"text": items[3]["text"].upper(), "label": "neutral"}]
    again = c.post(f"{BASE}/items", json={"items": repeats})
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == {"text": 4}
    listed = c.get(f"{BASE}/items", params={"limit": 5}).json()["data"]
    assert len(listed) == 5 and all(i["entities"] == ["AAPL"] for i in listed)
    assert c.get(f"{BASE}/entities").json()["data"] == [{"entity": "AAPL", "mentions": len(items)}]

    s = c.get(f"{BASE}/series", params={"entity": "AAPL", "bucket": "day", "start": T0.isoformat(),
                                         "end": (T0 + timedelta(days=3)).isoformat()}).json()
    assert [p["count"] for p in s["data"]] == [13, 12]
    assert s["data"][0]["negative"] == 2 and s["data"][0]["positive"] == 1
    assert s["data"][0]["negative_share"] == pytest.approx(2 / 13)
    topic = c.get(f"{BASE}/series", params={"topic": "retail", "bucket": "day", "start": T0.isoformat(),
                                             "end": (T0 + timedelta(days=3)).isoformat()}).json()
    assert [p["count"] for p in topic["data"]] == [1]
    png = c.get(f"{BASE}/chart.png", params={"entity": "AAPL", "start": T0.isoformat(),
                                              "end": (T0 + timedelta(days=3)).isoformat()})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    empty = c.get(f"{BASE}/chart.png", params={"entity": "NOPE"})
    assert empty.status_code == 400 and "nothing to draw" in empty.text
    no_label = c.post(f"{BASE}/items", json={"items": [{"text": "a brand new story"}]})
    assert no_label.status_code == 400 and "model" in no_label.text


def test_rule_fires_on_a_negative_burst_and_delivers_to_the_webhook(api, hook):
    _, key = api.tenant()
    c = api.as_(key)
    url = f"http://127.0.0.1:{hook.server_address[1]}/alerts"
    rule = c.post(f"{BASE}/rules", json={"name": "AAPL turns", "entity": "AAPL", "window_minutes": 120,
                                          "baseline_minutes": 3 * 24 * 60, "min_items": 4, "webhook_url": url,
                                          "webhook_secret": "s3", "emails": ["ops@example.com"]})
    assert rule.status_code == 200, rule.text
    assert rule.json()["has_webhook_secret"] and "webhook_secret" not in rule.json()
    bg = c.post(f"{BASE}/items", json={"items": _background(days=3)}).json()
    assert bg["alerts"] == []
    r = c.post(f"{BASE}/items", json={"items": _burst(T0 + timedelta(days=3, minutes=30))}).json()
    assert len(r["alerts"]) == 1
    alert = r["alerts"][0]
    assert alert["entity"] == "AAPL" and alert["rule_name"] == "AAPL turns" and alert["z"] >= 3
    burst_ids = set(r["item_ids"])
    assert {i["id"] for i in alert["items"]} & burst_ids and all(i["label"] == "bearish" for i in alert["items"])
    (headers, payload), = hook.received
    assert payload["id"] == alert["id"] and headers["X-TuneForge-Signature"].startswith("sha256=")
    stored = c.get(f"{BASE}/alerts/{alert['id']}").json()
    channels = {d["channel"]: d for d in stored["deliveries"]}
    assert channels["webhook"]["ok"] and not channels["email"]["ok"]  # no SMTP configured in tests
    assert "SMTP" in channels["email"]["detail"]
    assert [a["id"] for a in c.get(f"{BASE}/alerts").json()["data"]] == [alert["id"]]
    # cooldown: more bad news right after does not alert again
    more = c.post(f"{BASE}/items", json={"items": _burst(T0 + timedelta(days=3, hours=2), n=3)}).json()
    assert more["stored"] == 3 and more["alerts"] == []
    # rules can be switched off and deleted
    assert c.patch(f"{BASE}/rules/{rule.json()['id']}", json={"enabled": False}).json()["enabled"] is False
    assert c.delete(f"{BASE}/rules/{rule.json()['id']}").json()["deleted"]
    assert c.get(f"{BASE}/alerts").json()["data"] == []  # its alerts went with it


def test_bad_rules_and_scopes(api):
    _, key = api.tenant()
    c = api.as_(key)
    bad = c.post(f"{BASE}/rules", json={"metric": "mood", "webhook_url": "ftp://x", "emails": ["nobody"]})
    assert bad.status_code == 400 and "metric" in bad.text and "webhook_url" in bad.text and "emails" in bad.text
    short = c.post(f"{BASE}/rules", json={"window_minutes": 600, "baseline_minutes": 60})
    assert short.status_code == 400 and "baseline_minutes" in short.text
    _, predict_only = api.tenant(scopes=["predict"])
    p = api.as_(predict_only)
    assert p.post(f"{BASE}/rules", json={}).status_code == 403
    assert p.post(f"{BASE}/watchlist", json={"name": "AAPL"}).status_code == 403
    assert p.post(f"{BASE}/items", json={"items": [{"text": "$X up", "label": "bullish"}]}).status_code == 200


def test_another_tenant_gets_404(api):
    _, ka = api.tenant()
    _, kb = api.tenant()
    a, b = api.as_(ka), api.as_(kb)
    rule = a.post(f"{BASE}/rules", json={"entity": "AAPL", "window_minutes": 120, "baseline_minutes": 4320,
                                          "min_items": 4}).json()
    watch = a.post(f"{BASE}/watchlist", json={"name": "AAPL"}).json()
    src = a.post(f"{BASE}/sources", json={"url": "http://news.example/feed", "interval_s": 600}).json()
    a.post(f"{BASE}/items", json={"items": _background(days=3)})
    alert = a.post(f"{BASE}/items", json={"items": _burst(T0 + timedelta(days=3, minutes=30))}).json()["alerts"][0]
    for r in (b.get(f"{BASE}/rules/{rule['id']}"), b.patch(f"{BASE}/rules/{rule['id']}", json={"enabled": False}),
              b.delete(f"{BASE}/rules/{rule['id']}"), b.delete(f"{BASE}/watchlist/{watch['id']}"),
              b.delete(f"{BASE}/sources/{src['id']}"), b.post(f"{BASE}/sources/{src['id']}/poll"),
              b.get(f"{BASE}/alerts/{alert['id']}")):
        assert r.status_code == 404, r.text
    for path in ("rules", "watchlist", "sources", "alerts", "items", "entities"):
        assert b.get(f"{BASE}/{path}").json()["data"] == [], path
    assert b.get(f"{BASE}/series", params={"entity": "AAPL", "start": T0.isoformat(),
                                            "end": (T0 + timedelta(days=4)).isoformat()}).json()["data"] == []
    # the same story is new to another tenant
    assert b.post(f"{BASE}/items", json={"items": _burst(T0)[:1]}).json()["stored"] == 1
    assert a.get(f"{BASE}/rules/{rule['id']}").status_code == 200


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory, tiny_bert):
    """A tiny BERT fine-tuned for a few steps on bearish/bullish/neutral headlines."""
    from tuneforge.training.config import TrainConfig
    from tuneforge.training.recipe import train

    d = tmp_path_factory.mktemp("monitor-run")
    rows = [{"text": t, "label": y} for t, y in [
        ("shares fall on weak demand", "bearish"), ("stock cut to sell", "bearish"), ("profit warning", "bearish"),
        ("shares rise on strong demand", "bullish"), ("stock upgraded to buy", "bullish"),
        ("record profit", "bullish"), ("annual meeting held", "neutral"), ("company names new director", "neutral"),
        ("board meets on tuesday", "neutral")]] * 2
    train(TrainConfig(task="classification", data=write_jsonl(d / "train.jsonl", rows), output=d / "run",
                      base_model=str(tiny_bert), epochs=1, batch_size=8, max_length=32))
    return d / "run"


def _register(api, key: str, run) -> str:
    """The tiny run as one of the tenant's fine-tuned models."""
    state = api.app.state.tuneforge
    with api.sessions() as s:
        p = authenticate(s, key)
        model_id = f"ft:tiny-bert:{p.tenant_name}:sent"
        storage_key = f"models/{p.tenant_id}/sent"
        s.add(Model(id=model_id, tenant_id=p.tenant_id, job_id="ftjob-x", base_model="tiny-bert",
                    task="classification", storage_key=storage_key, bytes=1, created_at=utcnow()))
        s.commit()
    shutil.copytree(run, state.storage.local_path(storage_key))
    return model_id


def test_push_items_classified_by_a_fine_tuned_model(api, sentiment_run):
    _, key = api.tenant()
    model_id = _register(api, key, sentiment_run)
    c = api.as_(key)
    r = c.post(f"{BASE}/items", json={"model": model_id, "items": [
        {"text": "$AAPL shares fall on weak demand"}, {"text": "贵州茅台 record profit"},
        {"text": "$TSLA board meets", "label": "bullish"}]})
    assert r.status_code == 200, r.text
    items = {i["text"]: i for i in c.get(f"{BASE}/items").json()["data"]}
    assert len(items) == 3
    for text in ("$AAPL shares fall on weak demand", "贵州茅台 record profit"):
        i = items[text]
        assert i["label"] in {"bearish", "bullish", "neutral"}
        assert i["polarity"] == {"bearish": "negative", "bullish": "positive", "neutral": "neutral"}[i["label"]]
        assert -1 <= i["score"] <= 1
    assert items["贵州茅台 record profit"]["lang"] == "zh"
    assert items["$TSLA board meets"]["label"] == "bullish" and items["$TSLA board meets"]["score"] == 1.0
    _, other = api.tenant()
    assert api.as_(other).post(f"{BASE}/items", json={"model": model_id, "items": [{"text": "x"}]}).status_code == 404


RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>News</title>
<item><title>$AAPL shares fall on weak demand</title><link>http://news.example/a/1</link><guid>a1</guid>
<pubDate>Fri, 01 Mar 2024 10:00:00 GMT</pubDate></item>
<item><title>$TSLA stock upgraded to buy</title><link>http://news.example/a/2</link><guid>a2</guid></item>
</channel></rss>"""


def test_poll_a_source_now(api, sentiment_run, monkeypatch):
    import httpx

    from tuneforge.api.routers import monitor as monitor_router
    from tuneforge.solutions.monitor.ingest import Poller

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/robots.txt":
            return httpx.Response(200, text="User-agent: *\nDisallow: /private\n")
        if request.url.path == "/private/feed":
            return httpx.Response(200, text=RSS)
        if request.headers.get("if-none-match") == '"e1"':
            return httpx.Response(304)
        return httpx.Response(200, text=RSS, headers={"ETag": '"e1"'})

    monkeypatch.setattr(monitor_router, "Poller", lambda **kw: Poller(transport=httpx.MockTransport(handler), **kw))
    _, key = api.tenant()
    model_id = _register(api, key, sentiment_run)
    c = api.as_(key)
    src = c.post(f"{BASE}/sources", json={"url": "http://news.example/feed", "interval_s": 600}).json()
    no_model = c.post(f"{BASE}/sources/{src['id']}/poll")
    assert no_model.status_code == 400 and "model" in no_model.text
    assert c.get(f"{BASE}/sources").json()["data"][0]["last_polled_at"] is None  # nothing fetched
    first = c.post(f"{BASE}/sources/{src['id']}/poll", params={"model": model_id})
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "ok" and first.json()["stored"] == 2
    items = c.get(f"{BASE}/items").json()["data"]
    assert {i["url"] for i in items} == {"http://news.example/a/1", "http://news.example/a/2"}
    assert {e for i in items for e in i["entities"]} == {"AAPL", "TSLA"}
    again = c.post(f"{BASE}/sources/{src['id']}/poll", params={"model": model_id}).json()
    assert again["status"] == "not_modified" and "stored" not in again
    listed = c.get(f"{BASE}/sources").json()["data"][0]
    assert listed["last_status"] == "not_modified" and listed["last_polled_at"]
    private = c.post(f"{BASE}/sources", json={"url": "http://news.example/private/feed"}).json()
    blocked = c.post(f"{BASE}/sources/{private['id']}/poll", params={"model": model_id}).json()
    assert blocked["status"] == "disallowed"
