"""Rolling-baseline anomaly detection: pure functions over timestamped observations.

A rule compares the current window (the last ``window_minutes``) with the trailing baseline before it (the
``baseline_minutes`` that end where the window starts):

- ``negative_share``: the share of negative items in the window against the baseline's share, as a one-sided
  binomial z-score ``(p - p0) / sqrt(p0 (1 - p0) / n)``, with ``p0`` smoothed (``(neg + 1) / (n + 2)``) so a
  baseline without a single negative item does not make every negative item infinitely surprising.
- ``volume`` / ``negative_volume``: the number of (negative) items in the window against the count the baseline
  rate predicts for a window, as a Poisson z-score ``(n - mu) / sqrt(max(mu, 1))``.

A detection needs ``z >= threshold``, at least ``min_items`` items in the window (negative items, for
``negative_volume``) and, for ``negative_share``, a share at least ``min_increase`` above the baseline's; after an
alert an entity stays quiet for ``cooldown_minutes``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from tuneforge.errors import ConfigError

__all__ = ["METRICS", "Detection", "Observation", "RuleParams", "detect_stream", "evaluate"]

Metric = Literal["negative_share", "volume", "negative_volume"]
METRICS: tuple[str, ...] = ("negative_share", "volume", "negative_volume")


@dataclass(frozen=True)
class RuleParams:
    """The detection part of an alert rule (the channels and the entity live in the stored rule)."""

    metric: str = "negative_share"
    window_minutes: int = 360
    baseline_minutes: int = 7 * 24 * 60
    threshold: float = 3.0
    min_items: int = 5
    min_increase: float = 0.2
    cooldown_minutes: int = 360

    def __post_init__(self) -> None:
        problems = []
        if self.metric not in METRICS:
            problems.append(f"metric: '{self.metric}' is not one of {', '.join(METRICS)}")
        if self.window_minutes < 1:
            problems.append(f"window_minutes: {self.window_minutes} must be at least 1")
        if self.baseline_minutes < self.window_minutes:
            problems.append(f"baseline_minutes: {self.baseline_minutes} must be at least window_minutes "
                            f"({self.window_minutes})")
        if not self.threshold > 0:
            problems.append(f"threshold: {self.threshold} must be above 0 (a z-score, e.g. 3)")
        if self.min_items < 1:
            problems.append(f"min_items: {self.min_items} must be at least 1")
        if not 0 <= self.min_increase < 1:
            problems.append(f"min_increase: {self.min_increase} must be in [0, 1)")
        if self.cooldown_minutes < 0:
            problems.append(f"cooldown_minutes: {self.cooldown_minutes} must be 0 or more")
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True)
class Observation:
    """One classified item of one entity."""

    at: datetime
    negative: bool
    item_id: str = ""


@dataclass(frozen=True)
class Detection:
    """An anomaly at ``at``: the window's ``value`` against the baseline's ``expected``."""

    at: datetime
    metric: str
    value: float
    expected: float
    z: float
    window_items: int
    baseline_items: int
    item_ids: list[str] = field(default_factory=list)


def _z_share(neg: int, n: int, neg_b: int, n_b: int) -> tuple[float, float, float]:
    p = neg / n
    p0 = (neg_b + 1) / (n_b + 2)
    return p, p0, (p - p0) / math.sqrt(p0 * (1 - p0) / n)


def _z_count(n: int, n_b: int, window: float, baseline: float) -> tuple[float, float]:
    mu = n_b * window / baseline
    return mu, (n - mu) / math.sqrt(max(mu, 1.0))


def _evaluate_sorted(obs: Sequence[Observation], times: list[datetime], rule: RuleParams,
                     now: datetime) -> Detection | None:
    w_start = now - timedelta(minutes=rule.window_minutes)
    b_start = w_start - timedelta(minutes=rule.baseline_minutes)
    i_b = bisect.bisect_right(times, b_start)
    i_w = bisect.bisect_right(times, w_start)
    i_end = bisect.bisect_right(times, now)
    window, baseline = obs[i_w:i_end], obs[i_b:i_w]
    n, n_b = len(window), len(baseline)
    neg = sum(o.negative for o in window)
    neg_b = sum(o.negative for o in baseline)
    if rule.metric == "negative_share":
        if n < rule.min_items:
            return None
        value, expected, z = _z_share(neg, n, neg_b, n_b)
        if value - expected < rule.min_increase:
            return None
        trigger = [o for o in window if o.negative]
    elif rule.metric == "volume":
        if n < rule.min_items:
            return None
        expected, z = _z_count(n, n_b, rule.window_minutes, rule.baseline_minutes)
        value = float(n)
        trigger = list(window)
    else:
        if neg < rule.min_items:
            return None
        expected, z = _z_count(neg, neg_b, rule.window_minutes, rule.baseline_minutes)
        value = float(neg)
        trigger = [o for o in window if o.negative]
    if z < rule.threshold:
        return None
    return Detection(at=now, metric=rule.metric, value=value, expected=expected, z=z, window_items=n,
                     baseline_items=n_b, item_ids=[o.item_id for o in trigger])


def evaluate(observations: Sequence[Observation], rule: RuleParams, now: datetime) -> Detection | None:
    """The detection at ``now`` over ``observations`` (any order; items after ``now`` are ignored), or None."""
    obs = sorted(observations, key=lambda o: o.at)
    return _evaluate_sorted(obs, [o.at for o in obs], rule, now)


def detect_stream(observations: Sequence[Observation], rule: RuleParams, *,
                  last_alert: datetime | None = None, at: Sequence[datetime] | None = None) -> list[Detection]:
    """Replay ``observations`` in time order, evaluating the rule as each one arrives (as the service does on
    ingest), with the rule's cooldown between detections. ``last_alert`` is an earlier alert's time; ``at``
    limits the evaluations to those times (the new items' times when older ones were already evaluated)."""
    obs = sorted(observations, key=lambda o: o.at)
    times = [o.at for o in obs]
    cooldown = timedelta(minutes=rule.cooldown_minutes)
    found: list[Detection] = []
    for now in sorted(set(times if at is None else at)):
        if last_alert is not None and now - last_alert < cooldown:
            continue
        d = _evaluate_sorted(obs, times, rule, now)
        if d is not None:
            found.append(d)
            last_alert = now
    return found
