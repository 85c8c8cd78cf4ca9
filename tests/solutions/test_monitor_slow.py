"""The monitor on the real data: twitter_financial_news_sentiment and the minilm backbone (marked slow)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.conftest import shared_datasets, write_jsonl

pytestmark = pytest.mark.slow


def _rows(name: str) -> list[dict]:
    path = shared_datasets() / "twitter_financial_news_sentiment" / name
    return [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x.strip()]


def test_replay_of_the_validation_stream_finds_every_burst_with_gold_labels():
    from tuneforge.solutions.monitor.detect import RuleParams
    from tuneforge.solutions.monitor.replay import build_stream, detect, score_alerts

    gold = [r["label"] for r in _rows("validation.jsonl")]
    rule = RuleParams(metric="negative_volume", window_minutes=240, threshold=4, min_items=4)
    stream = build_stream(gold, seed=1)
    res = score_alerts(stream, detect(stream, gold, rule), rule)
    assert res["recall"] == 1.0 and res["precision"] >= 0.9 and res["delay_min_median"] < 120


def test_minilm_learns_finance_sentiment_and_drives_the_monitor(tmp_path):
    from tuneforge.solutions.monitor.classify import SentimentClassifier
    from tuneforge.training.config import TrainConfig
    from tuneforge.training.recipe import train

    train_rows, val_rows = _rows("train.jsonl")[::9], _rows("validation.jsonl")[::8]  # ~1,060 and 300 tweets
    train(TrainConfig(task="classification", data=write_jsonl(tmp_path / "t.jsonl", train_rows),
                      output=tmp_path / "run", base_model="minilm", epochs=2, seed=0))
    clf = SentimentClassifier.from_run_dirs(str(tmp_path / "run"))
    out = clf([r["text"] for r in val_rows])
    acc = sum(o.label == r["label"] for o, r in zip(out, val_rows, strict=True)) / len(val_rows)
    majority = Counter(r["label"] for r in val_rows).most_common(1)[0][1] / len(val_rows)
    assert acc > majority + 0.1, (acc, majority)
    assert {o.polarity for o in out} == {"negative", "positive", "neutral"}
