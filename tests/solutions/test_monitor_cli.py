"""`tuneforge solution monitor ...`: the commands on a tenant of a local SQLite service database."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import write_jsonl
from tuneforge.solutions.monitor.cli import app

T0 = datetime(2024, 3, 1, tzinfo=UTC)
WORDS = ["board", "dividend", "meeting", "supplier", "factory", "quarter", "report", "investors", "market", "chief",
         "officer", "plan", "product", "launch", "store", "service", "cloud", "chips", "deal", "europe", "asia"]


@pytest.fixture
def tenant(tmp_path, monkeypatch) -> str:
    from tuneforge.settings import Settings
    from tuneforge.store.db import make_engine, make_session_factory, upgrade
    from tuneforge.store.tenants import create_tenant, ensure_plans

    monkeypatch.setenv("TUNEFORGE_DATA_DIR", str(tmp_path / "svc"))
    monkeypatch.delenv("TUNEFORGE_DATABASE_URL", raising=False)
    monkeypatch.delenv("TUNEFORGE_MONITOR_SMTP_HOST", raising=False)
    engine = make_engine(Settings().db_url)
    upgrade(engine)
    with make_session_factory(engine)() as s:
        ensure_plans(s)
        create_tenant(s, name="acme", plan="pro")
        s.commit()
    engine.dispose()
    return "acme"


def _stream(path: Path) -> Path:
    rng = random.Random(0)
    rows = [{"text": "$AAPL " + " ".join(rng.sample(WORDS, 6)), "label": "bearish" if k % 6 == 0 else "neutral",
             "published_at": (T0 + timedelta(hours=2 * k)).isoformat()} for k in range(36)]
    rows += [{"text": "Apple plunges: " + " ".join(rng.sample(WORDS, 6)), "label": "bearish",
              "published_at": (T0 + timedelta(days=3, minutes=30 + 10 * k)).isoformat()} for k in range(6)]
    return write_jsonl(path, rows)


def test_watchlist_rules_ingest_alert_chart(tenant, tmp_path):
    r = CliRunner()
    assert r.invoke(app, ["watchlist", "add", "--tenant", tenant, "AAPL", "-a", "Apple"]).exit_code == 0
    res = r.invoke(app, ["rules", "add", "--tenant", tenant, "--entity", "AAPL", "--window", "120",
                         "--baseline", "4320", "--min-items", "4", "--name", "apple turns"])
    assert res.exit_code == 0, res.output
    listed = r.invoke(app, ["rules", "list", "--tenant", tenant], env={"COLUMNS": "200"})
    assert "apple turns" in listed.output and "negative_share" in listed.output
    res = r.invoke(app, ["ingest", "--tenant", tenant, str(_stream(tmp_path / "s.jsonl"))], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "stored 42" in res.output and "alerts fired: 1" in res.output and "ALERT AAPL negative_share" in res.output
    again = r.invoke(app, ["ingest", "--tenant", tenant, str(tmp_path / "s.jsonl")])
    assert "stored 0" in again.output and "text 42" in again.output
    png = tmp_path / "aapl.png"
    res = r.invoke(app, ["chart", "--tenant", tenant, "AAPL", "-o", str(png), "--bucket", "day"])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    table = r.invoke(app, ["chart", "--tenant", tenant, "AAPL", "--bucket", "day"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "2024-03-04" in table.output and "█" in table.output
    alerts = r.invoke(app, ["alerts", "--tenant", tenant], env={"COLUMNS": "200"})
    assert "AAPL" in alerts.output and "Apple plunges" in alerts.output


def test_sources_and_one_watch_round(tenant, tmp_path, tiny_bert):
    r = CliRunner()
    bad = r.invoke(app, ["sources", "add", "--tenant", tenant, "ftp://x", "--kind", "blog", "--interval", "5"])
    assert bad.exit_code != 0 and "kind" in str(bad.exception) and "interval" in str(bad.exception)
    # nothing listens on port 9 here: the poll fails fast and is reported, the loop goes on
    ok = r.invoke(app, ["sources", "add", "--tenant", tenant, "http://127.0.0.1:9/feed", "--interval", "600"])
    assert ok.exit_code == 0 and "every 600 s" in ok.output
    no_model = r.invoke(app, ["watch", "--tenant", tenant, "--once"])
    assert no_model.exit_code != 0 and "--model" in str(no_model.exception)
    res = r.invoke(app, ["watch", "--tenant", tenant, "--once", "--model", str(_cls_run(tmp_path, tiny_bert))],
                   env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "http://127.0.0.1:9/feed: error" in res.output
    listed = r.invoke(app, ["sources", "list", "--tenant", tenant], env={"COLUMNS": "200"}).output
    assert "127.0.0.1:9" in listed and "error" in listed
    again = r.invoke(app, ["watch", "--tenant", tenant, "--once", "--model", str(tmp_path / "cls")])
    assert again.exit_code == 0 and "127.0.0.1" not in again.output  # polled just now: not due


def test_replay_scores_gold_labels(tmp_path):
    rows = [{"text": f"t{k}", "label": "bearish" if k % 5 == 0 else "neutral"} for k in range(600)]
    res = CliRunner().invoke(app, ["replay", str(write_jsonl(tmp_path / "v.jsonl", rows)), "--days", "20",
                                   "--bursts", "4", "--burst-size", "6", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["labels"] == "gold" and got["bursts"] == 4 and got["recall"] >= 0.75 and got["precision"] > 0.5


def test_errors_are_one_message_and_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\nnot json\n')
    r = subprocess.run([sys.executable, "-m", "tuneforge.cli", "solution", "monitor", "replay", str(bad)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad.jsonl:1" in r.stderr and "bad.jsonl:2" in r.stderr


def test_classify_with_a_run_folder(tmp_path, tiny_bert):
    from tuneforge.training.config import TrainConfig
    from tuneforge.training.recipe import train

    rows = [{"text": "shares fall", "label": "bearish"}, {"text": "shares rise", "label": "bullish"},
            {"text": "board meets", "label": "neutral"}] * 4
    train(TrainConfig(task="classification", data=write_jsonl(tmp_path / "t.jsonl", rows), output=tmp_path / "run",
                      base_model=str(tiny_bert), epochs=1, batch_size=8, max_length=32))
    res = CliRunner().invoke(app, ["classify", "--model", str(tmp_path / "run"), "--watch", "AAPL:Apple",
                                   "Apple shares fall", "茅台股价大涨 shares rise"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if "shares" in line]
    assert "AAPL" in lines[0] and " en " in lines[0] and " zh " in lines[1]
    assert all(any(x in line for x in ("bearish", "bullish", "neutral")) for line in lines)
    missing = CliRunner().invoke(app, ["classify", "hello"])
    assert missing.exit_code != 0 and "--model" in str(missing.exception)


def test_a_story_stored_concurrently_is_counted_as_a_duplicate(tenant, monkeypatch):
    from tuneforge.settings import Settings
    from tuneforge.solutions.monitor import service
    from tuneforge.solutions.monitor.ingest import RawItem
    from tuneforge.store.db import make_engine, make_session_factory
    from tuneforge.store.tenants import get_tenant

    engine = make_engine(Settings().db_url)
    sessions = make_session_factory(engine)
    story = RawItem("$AAPL cut to sell at a big bank", published_at=T0)
    with sessions() as s:
        tenant_id = get_tenant(s, tenant).id
        first = service.ingest_items(s, tenant_id, [story], classify=None, given=[{"label": "bearish"}])
        assert first.stored == 1
    # a second ingest that did not see the first one's row when it checked (as two requests at once would)
    calls = []
    real = service.ItemRepo.existing_hashes

    def stale_then_real(self, hashes):
        calls.append(1)
        return set() if len(calls) == 1 else real(self, hashes)

    monkeypatch.setattr(service.ItemRepo, "existing_hashes", stale_then_real)
    with sessions() as s:
        again = service.ingest_items(s, tenant_id, [story, RawItem("$TSLA recalls cars", published_at=T0)],
                                     classify=None, given=[{"label": "bearish"}, {"label": "neutral"}], memory=0)
    assert len(calls) == 2 and again.stored == 1 and again.duplicates == {"text": 1}
    with sessions() as s:
        assert [i.text for i in service.ItemRepo(s, tenant_id).recent(10)] == ["$TSLA recalls cars",
                                                                               "$AAPL cut to sell at a big bank"]
    engine.dispose()


def test_ingest_with_a_ner_model_adds_org_mentions(tenant, tmp_path, tiny_bert):
    from tuneforge.solutions.monitor.entities import EntityMatcher
    from tuneforge.training.config import TrainConfig
    from tuneforge.training.recipe import train

    rows = [{"tokens": ["acme", "corp", "shares", "fall"], "tags": ["B-ORG", "I-ORG", "O", "O"]},
            {"tokens": ["globex", "profit", "rises"], "tags": ["B-ORG", "O", "O"]}] * 6
    train(TrainConfig(task="ner", data=write_jsonl(tmp_path / "ner.jsonl", rows), output=tmp_path / "ner",
                      base_model=str(tiny_bert), epochs=1, batch_size=4, max_length=32))
    from tuneforge.solutions.monitor.cli import _ner

    ner = _ner(tmp_path / "ner")
    found = EntityMatcher(ner=ner)(["acme corp shares fall"])[0]
    preds = ner(["acme corp shares fall"])[0]["entities"]
    assert found == [e["text"] for e in preds if e["type"] == "ORG"]  # exactly the model's ORG mentions
    with pytest.raises(Exception, match="not a NER model"):
        _ner(_cls_run(tmp_path, tiny_bert))
    items = write_jsonl(tmp_path / "i.jsonl", [{"text": "acme corp shares fall", "label": "bearish"}])
    res = CliRunner().invoke(app, ["ingest", "--tenant", tenant, str(items), "--ner", str(tmp_path / "ner")])
    assert res.exit_code == 0, res.output
    assert "stored 1" in res.output


def _cls_run(tmp_path: Path, tiny_bert: Path) -> Path:
    from tuneforge.training.config import TrainConfig
    from tuneforge.training.recipe import train

    rows = [{"text": "up", "label": "bullish"}, {"text": "down", "label": "bearish"}] * 4
    train(TrainConfig(task="classification", data=write_jsonl(tmp_path / "c.jsonl", rows), output=tmp_path / "cls",
                      base_model=str(tiny_bert), epochs=1, batch_size=8, max_length=16))
    return tmp_path / "cls"
