"""A replayed news stream with injected negative bursts, to measure alerting: precision, recall and delay.

Background items (texts with labels, e.g. a validation set) are spread uniformly over ``days`` simulated days
and assigned at random to ``entities``; then ``bursts`` bursts of ``burst_size`` negative items each are
injected for one entity within ``burst_minutes`` at known times (at least ``warmup_days`` in, so there is a
baseline, and never two bursts of one entity within two days). Detection runs on whatever labels are given
(a model's predictions, or the gold labels for an upper bound). Everything is drawn from one seeded generator.

An alert is a true positive when it is for the burst's entity and falls between the burst's start and its end
plus one detection window; a burst is found when it has one. Delay: from the burst's start to its first alert,
in minutes and in burst items published by then.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.solutions.monitor.detect import Detection, Observation, RuleParams, detect_stream

__all__ = ["Burst", "Stream", "StreamItem", "build_stream", "detect", "pool_scores", "score_alerts"]

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
DEFAULT_ENTITIES = ("AAPL", "TSLA", "JPM", "XOM", "AMZN", "NVDA")


@dataclass(frozen=True)
class StreamItem:
    index: int  # index into the caller's texts (the item whose label/prediction is used)
    entity: str
    at: datetime
    burst: int | None = None


@dataclass(frozen=True)
class Burst:
    entity: str
    start: datetime
    end: datetime


@dataclass
class Stream:
    items: list[StreamItem]
    bursts: list[Burst]
    days: int
    entities: list[str] = field(default_factory=list)


def build_stream(labels: Sequence[str], *, negative: str = "bearish", days: int = 30,
                 entities: Sequence[str] = DEFAULT_ENTITIES, bursts: int = 12, burst_size: int = 8,
                 burst_minutes: int = 120, warmup_days: int = 8, seed: int = 0) -> Stream:
    """A stream over the items whose gold ``labels`` are given; burst items are drawn (held out) from the items
    labelled ``negative``, the rest are background."""
    problems = []
    if days < warmup_days + 2:
        problems.append(f"days: {days} must be at least warmup_days + 2 ({warmup_days + 2})")
    if len(set(entities)) < 1:
        problems.append("entities: give at least one")
    neg_idx = [i for i, y in enumerate(labels) if y == negative]
    if bursts * burst_size > len(neg_idx) // 2:
        problems.append(f"bursts x burst_size = {bursts * burst_size} needs more '{negative}' items than half of "
                        f"the {len(neg_idx)} available; inject fewer or smaller bursts")
    if problems:
        raise ConfigError(problems)
    rng = random.Random(seed)
    rng.shuffle(neg_idx)
    held = neg_idx[: bursts * burst_size]
    held_set = set(held)
    ents = list(dict.fromkeys(entities))
    span = days * 24 * 60
    items = [StreamItem(i, rng.choice(ents), EPOCH + timedelta(minutes=rng.uniform(0, span)))
             for i in range(len(labels)) if i not in held_set]
    placed: list[Burst] = []
    lo, hi = warmup_days * 24 * 60, span - 24 * 60 - burst_minutes
    for b in range(bursts):
        entity = ents[b % len(ents)]
        for _ in range(1000):
            start = EPOCH + timedelta(minutes=rng.uniform(lo, hi))
            if all(p.entity != entity or abs((p.start - start).total_seconds()) > 2 * 86400 for p in placed):
                break
        else:
            raise ConfigError(f"bursts: cannot place {bursts} bursts {len(ents)} entities over {days} days two days "
                              "apart; use fewer bursts or more days")
        placed.append(Burst(entity, start, start + timedelta(minutes=burst_minutes)))
        for k in held[b * burst_size:(b + 1) * burst_size]:
            items.append(StreamItem(k, entity, start + timedelta(minutes=rng.uniform(0, burst_minutes)), burst=b))
    items.sort(key=lambda it: (it.at, it.index))
    return Stream(items, placed, days, ents)


def detect(stream: Stream, labels: Sequence[str], rule: RuleParams, *, negative: str = "bearish"
           ) -> dict[str, list[Detection]]:
    """Run the rule over each entity's items with the given labels (one per text index)."""
    out: dict[str, list[Detection]] = {}
    for entity in stream.entities:
        obs = [Observation(it.at, labels[it.index] == negative, str(it.index))
               for it in stream.items if it.entity == entity]
        out[entity] = detect_stream(obs, rule)
    return out


def score_alerts(stream: Stream, alerts: dict[str, list[Detection]], rule: RuleParams) -> dict[str, Any]:
    """Alert precision and recall, detection delay, and false alarms per simulated day."""
    slack = timedelta(minutes=rule.window_minutes)
    n_alerts = sum(len(a) for a in alerts.values())
    true_alerts = 0
    delays_min: list[float] = []
    delays_items: list[int] = []
    found = 0
    for b_i, b in enumerate(stream.bursts):
        hits = [a for a in alerts.get(b.entity, []) if b.start <= a.at <= b.end + slack]
        if hits:
            found += 1
            first = min(h.at for h in hits)
            delays_min.append((first - b.start).total_seconds() / 60)
            delays_items.append(sum(1 for it in stream.items if it.burst == b_i and it.at <= first))
    for entity, lst in alerts.items():
        for a in lst:
            if any(b.entity == entity and b.start <= a.at <= b.end + slack for b in stream.bursts):
                true_alerts += 1
    return {
        "alerts": n_alerts,
        "true_alerts": true_alerts,
        "bursts": len(stream.bursts),
        "found": found,
        "precision": true_alerts / n_alerts if n_alerts else 0.0,
        "recall": found / len(stream.bursts) if stream.bursts else 0.0,
        "false_alarms_per_day": (n_alerts - true_alerts) / stream.days,
        "delay_min_mean": statistics.fmean(delays_min) if delays_min else None,
        "delay_min_median": statistics.median(delays_min) if delays_min else None,
        "delay_items_mean": statistics.fmean(delays_items) if delays_items else None,
        "delays_min": delays_min,
        "delays_items": delays_items,
    }


def pool_scores(scores: Sequence[dict[str, Any]], days: int) -> dict[str, Any]:
    """Scores of several replayed streams pooled: precision over all alerts, recall over all bursts, delays
    over all found bursts."""
    alerts = sum(s["alerts"] for s in scores)
    true_alerts = sum(s["true_alerts"] for s in scores)
    bursts = sum(s["bursts"] for s in scores)
    found = sum(s["found"] for s in scores)
    d_min = [d for s in scores for d in s["delays_min"]]
    d_items = [d for s in scores for d in s["delays_items"]]
    return {"streams": len(scores), "bursts": bursts, "alerts": alerts,
            "precision": true_alerts / alerts if alerts else 0.0, "recall": found / bursts if bursts else 0.0,
            "false_alarms_per_day": (alerts - true_alerts) / (days * len(scores)) if scores else 0.0,
            "delay_min_mean": statistics.fmean(d_min) if d_min else None,
            "delay_min_median": statistics.median(d_min) if d_min else None,
            "delay_items_mean": statistics.fmean(d_items) if d_items else None}
