"""The monitor's service layer: store classified items, keep the per-entity series, run the alert rules.

Shared by the API and the CLI. Functions take a SQLAlchemy session and a tenant id; every query goes through
the tenant-scoped repositories below (subclasses of :class:`tuneforge.store.repositories.TenantRepo`), so one
tenant never reads another's rows. Rules are evaluated at the publication times of newly stored items (event
time, not wall-clock time), so ingesting a historical file detects exactly what a live stream would have.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import func
from sqlalchemy.orm import Session

from tuneforge.errors import ConfigError, InvalidRequestError
from tuneforge.solutions.monitor.classify import Classified, polarity
from tuneforge.solutions.monitor.detect import Observation, RuleParams, detect_stream
from tuneforge.solutions.monitor.entities import EntityMatcher, WatchEntry
from tuneforge.solutions.monitor.ingest import Deduplicator, RawItem, SourceState, normalized_hash
from tuneforge.solutions.monitor.notify import (
    Delivery,
    SmtpSettings,
    alert_text,
    send_email,
    send_webhook,
)
from tuneforge.store.db import utcnow
from tuneforge.store.ids import new_id
from tuneforge.store.repositories import TenantRepo
from tuneforge.store.solution_tables.monitor import (
    MonitorAlert,
    MonitorItem,
    MonitorMention,
    MonitorRule,
    MonitorSource,
    MonitorWatch,
)

__all__ = ["AlertRepo", "IngestReport", "ItemRepo", "RuleRepo", "SourceRepo", "WatchRepo", "alert_payload",
           "deliver", "ingest_items", "matcher_for", "rule_params", "series", "smtp_from_env"]

Classify = Callable[[list[str]], list[Classified]]


class WatchRepo(TenantRepo[Any]):
    model = MonitorWatch
    noun = "watch-list entry"
    param = "watch_id"

    def all(self) -> list[MonitorWatch]:
        return list(self.session.scalars(self.select().order_by(MonitorWatch.name)))

    def by_name(self, name: str) -> MonitorWatch | None:
        return cast(MonitorWatch | None, self.session.scalar(self.select().where(MonitorWatch.name == name)))


class SourceRepo(TenantRepo[Any]):
    model = MonitorSource
    noun = "source"
    param = "source_id"

    def all(self) -> list[MonitorSource]:
        return list(self.session.scalars(self.select().order_by(MonitorSource.created_at)))


class ItemRepo(TenantRepo[Any]):
    model = MonitorItem
    noun = "item"
    param = "item_id"

    def by_ids(self, ids: Sequence[str]) -> list[MonitorItem]:
        if not ids:
            return []
        return list(self.session.scalars(self.select().where(MonitorItem.id.in_(list(ids)))
                                         .order_by(MonitorItem.published_at)))

    def existing_hashes(self, hashes: Sequence[str]) -> set[str]:
        if not hashes:
            return set()
        return set(self.session.scalars(self.select(MonitorItem.text_hash).where(
            MonitorItem.text_hash.in_(list(hashes)))))

    def recent(self, limit: int) -> list[MonitorItem]:
        return list(self.session.scalars(self.select().order_by(MonitorItem.created_at.desc()).limit(limit)))

    def mentions(self, entity: str, start: datetime, end: datetime) -> list[MonitorMention]:
        return list(self.session.scalars(self.select(of=MonitorMention).where(
            MonitorMention.entity == entity,
            MonitorMention.published_at >= start, MonitorMention.published_at <= end)
            .order_by(MonitorMention.published_at)))

    def in_range(self, start: datetime, end: datetime, topic: str | None = None) -> list[MonitorItem]:
        q = self.select().where(MonitorItem.published_at >= start, MonitorItem.published_at <= end)
        if topic:
            q = q.where(MonitorItem.topic == topic)
        return list(self.session.scalars(q.order_by(MonitorItem.published_at)))

    def entities(self) -> list[tuple[str, int]]:
        rows = self.session.execute(self.select(MonitorMention.entity, func.count(), of=MonitorMention)
            .group_by(MonitorMention.entity)
            .order_by(func.count().desc()))
        return [(str(e), int(n)) for e, n in rows]


class RuleRepo(TenantRepo[Any]):
    model = MonitorRule
    noun = "alert rule"
    param = "rule_id"

    def enabled(self) -> list[MonitorRule]:
        return list(self.session.scalars(self.select().where(MonitorRule.enabled.is_(True))))


class AlertRepo(TenantRepo[Any]):
    model = MonitorAlert
    noun = "alert"
    param = "alert_id"

    def last_at(self, rule_id: str, entity: str) -> datetime | None:
        return cast(datetime | None, self.session.scalar(self.select(func.max(MonitorAlert.at)).where(
            MonitorAlert.rule_id == rule_id, MonitorAlert.entity == entity)))


def rule_params(rule: MonitorRule) -> RuleParams:
    return RuleParams(metric=rule.metric, window_minutes=rule.window_minutes, baseline_minutes=rule.baseline_minutes,
                      threshold=rule.threshold, min_items=rule.min_items, min_increase=rule.min_increase,
                      cooldown_minutes=rule.cooldown_minutes)


def matcher_for(session: Session, tenant_id: str, *, cashtags: bool = True,
                ner: Callable[[list[str]], list[dict[str, Any]]] | None = None) -> EntityMatcher:
    """The entity matcher of a tenant's watch-list (plus a NER model's ORG mentions when ``ner`` is given)."""
    return EntityMatcher([WatchEntry(w.name, list(w.aliases or [])) for w in WatchRepo(session, tenant_id).all()],
                         cashtags=cashtags, ner=ner)


@dataclass
class IngestReport:
    received: int = 0
    stored: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)
    item_ids: list[str] = field(default_factory=list)
    alert_ids: list[str] = field(default_factory=list)


def _given_label(raw: dict[str, Any] | None) -> tuple[str, float] | None:
    if not raw or not raw.get("label"):
        return None
    label = str(raw["label"])
    pol = polarity(label)
    score = raw.get("score")
    return label, float(score) if score is not None else {"negative": -1.0, "positive": 1.0}.get(pol, 0.0)


def ingest_items(session: Session, tenant_id: str, items: Sequence[RawItem], *, classify: Classify | None,
                 given: Sequence[dict[str, Any] | None] | None = None, matcher: EntityMatcher | None = None,
                 dedupe_threshold: float = 0.8, memory: int = 2000) -> IngestReport:
    """Drop repeats, classify, store items and mentions, then run the tenant's rules; commits once.

    ``given`` holds, per item, an optional ``{"label", "score", "topic"}`` already known (then no model is
    needed for it). Returns what was stored and the ids of the alerts fired (deliver them with :func:`deliver`).
    When a concurrent ingest stored one of the same stories first (the unique text hash), the batch is rolled
    back and ingested again, and that story counts as a duplicate.
    """
    from sqlalchemy.exc import IntegrityError

    try:
        return _ingest_once(session, tenant_id, items, classify=classify, given=given, matcher=matcher,
                            dedupe_threshold=dedupe_threshold, memory=memory)
    except IntegrityError:
        session.rollback()
        return _ingest_once(session, tenant_id, items, classify=classify, given=given, matcher=matcher,
                            dedupe_threshold=dedupe_threshold, memory=memory)


def _ingest_once(session: Session, tenant_id: str, items: Sequence[RawItem], *, classify: Classify | None,
                 given: Sequence[dict[str, Any] | None] | None, matcher: EntityMatcher | None,
                 dedupe_threshold: float, memory: int) -> IngestReport:
    from tuneforge.solutions.monitor.classify import detect_language, topic_of

    report = IngestReport(received=len(items))
    given = list(given) if given is not None else [None] * len(items)
    repo = ItemRepo(session, tenant_id)
    dedupe = Deduplicator(threshold=dedupe_threshold, memory=memory)
    for old in repo.recent(memory):
        dedupe.remember(RawItem(text=old.text, title=old.title, url=old.url, guid=old.guid))
    in_db = repo.existing_hashes([normalized_hash(i.full_text) for i in items])
    keep: list[tuple[RawItem, dict[str, Any] | None]] = []
    reasons: Counter[str] = Counter()
    for item, g in zip(items, given, strict=True):
        why = "text" if normalized_hash(item.full_text) in in_db else dedupe.why_duplicate(item)
        if why:
            reasons[why] += 1
            continue
        dedupe.remember(item)
        keep.append((item, g))
    report.duplicates = dict(reasons)
    need = [i for i, (_, g) in enumerate(keep) if _given_label(g) is None]
    if need and classify is None:
        raise InvalidRequestError(f"{len(need)} item(s) have no label and no sentiment model was given; pass a "
                                  "model (a fine-tuned classification model) or a label per item.", param="model",
                                  code="model_required")
    predicted: dict[int, Classified] = {}
    if need:
        assert classify is not None
        predicted = dict(zip(need, classify([keep[i][0].full_text for i in need]), strict=True))
    matcher = matcher or matcher_for(session, tenant_id)
    entity_lists = matcher([it.full_text for it, _ in keep])
    now = utcnow()
    new_times: dict[str, list[datetime]] = {}
    for k, ((item, g), ents) in enumerate(zip(keep, entity_lists, strict=True)):
        at = item.published_at or now
        if k in predicted:
            c = predicted[k]
            label, pol, score, lang, topic = c.label, c.polarity, c.score, c.lang, c.topic
        else:
            label, score = cast(tuple[str, float], _given_label(g))
            pol, lang = polarity(label), detect_language(item.full_text)
            topic = (g or {}).get("topic") or topic_of(item.full_text)
        row = repo.add(MonitorItem(id=new_id("mitem"), source=item.source[:255], url=item.url, guid=item.guid,
                                   title=item.title, text=item.text, text_hash=normalized_hash(item.full_text),
                                   lang=lang, published_at=at, label=label[:64], polarity=pol, score=score,
                                   topic=topic, entities=ents))
        for e in ents:
            session.add(MonitorMention(tenant_id=tenant_id, item_id=row.id, entity=e[:100], topic=topic,
                                       published_at=at, polarity=pol, score=score))
            new_times.setdefault(e[:100], []).append(at)
        report.item_ids.append(row.id)
    session.flush()
    report.stored = len(report.item_ids)
    report.alert_ids = [a.id for a in _run_rules(session, tenant_id, new_times)]
    session.commit()
    return report


def _run_rules(session: Session, tenant_id: str, new_times: dict[str, list[datetime]]) -> list[MonitorAlert]:
    if not new_times:
        return []
    items, alerts = ItemRepo(session, tenant_id), AlertRepo(session, tenant_id)
    fired: list[MonitorAlert] = []
    for rule in RuleRepo(session, tenant_id).enabled():
        params = rule_params(rule)
        span = timedelta(minutes=params.window_minutes + params.baseline_minutes)
        for entity, times in new_times.items():
            if rule.entity not in ("*", entity):
                continue
            mentions = items.mentions(entity, min(times) - span, max(times))
            obs = [Observation(m.published_at, m.polarity == "negative", m.item_id) for m in mentions]
            for d in detect_stream(obs, params, last_alert=alerts.last_at(rule.id, entity), at=times):
                fired.append(alerts.add(MonitorAlert(
                    id=new_id("malert"), rule_id=rule.id, entity=entity, metric=d.metric, at=d.at, value=d.value,
                    expected=d.expected, z=d.z, window_items=d.window_items, item_ids=d.item_ids[:200],
                    deliveries=[])))
                session.flush()
    return fired


def alert_payload(session: Session, tenant_id: str, alert: MonitorAlert, rule: MonitorRule | None = None
                  ) -> dict[str, Any]:
    """An alert as JSON, with its rule's name and the items that triggered it."""
    rule = rule or RuleRepo(session, tenant_id).get(alert.rule_id)
    items = ItemRepo(session, tenant_id).by_ids(alert.item_ids or [])
    return {"id": alert.id, "object": "monitor.alert", "rule_id": alert.rule_id, "rule_name": rule.name,
            "entity": alert.entity, "metric": alert.metric, "at": alert.at.isoformat(), "value": alert.value,
            "expected": alert.expected, "z": alert.z, "window_items": alert.window_items,
            "deliveries": alert.deliveries or [], "created_at": alert.created_at.isoformat(),
            "items": [{"id": i.id, "text": f"{i.title}. {i.text}" if i.title else i.text, "url": i.url,
                       "label": i.label, "score": i.score, "published_at": i.published_at.isoformat()}
                      for i in items]}


def smtp_from_env() -> SmtpSettings | None:
    """SMTP settings from ``TUNEFORGE_MONITOR_SMTP_HOST`` (and ``_PORT``, ``_USER``, ``_PASSWORD``, ``_FROM``,
    ``_STARTTLS``); None when no host is set (e-mail channels are then reported as not configured)."""
    host = os.environ.get("TUNEFORGE_MONITOR_SMTP_HOST")
    if not host:
        return None
    try:
        port = int(os.environ.get("TUNEFORGE_MONITOR_SMTP_PORT", "587"))
    except ValueError:
        raise ConfigError("TUNEFORGE_MONITOR_SMTP_PORT: must be a port number") from None
    return SmtpSettings(host=host, port=port, username=os.environ.get("TUNEFORGE_MONITOR_SMTP_USER"),
                        password=os.environ.get("TUNEFORGE_MONITOR_SMTP_PASSWORD"),
                        sender=os.environ.get("TUNEFORGE_MONITOR_SMTP_FROM", "tuneforge-monitor@localhost"),
                        starttls=os.environ.get("TUNEFORGE_MONITOR_SMTP_STARTTLS", "1") not in ("0", "false"))


def deliver(session: Session, tenant_id: str, alert_id: str, *, smtp: SmtpSettings | None = None,
            send_webhook_fn: Callable[..., Delivery] = send_webhook) -> list[Delivery]:
    """Send an alert to its rule's webhook and e-mail addresses and record the outcome on the alert."""
    alert = AlertRepo(session, tenant_id).get(alert_id)
    rule = RuleRepo(session, tenant_id).get(alert.rule_id)
    payload = alert_payload(session, tenant_id, alert, rule)
    session.rollback()  # hold no transaction open during network calls
    out: list[Delivery] = []
    if rule.webhook_url:
        out.append(send_webhook_fn(rule.webhook_url, payload, secret=rule.webhook_secret))
    if rule.emails:
        if smtp is None:
            out.append(Delivery("email", ", ".join(rule.emails), False,
                                "SMTP is not configured (set TUNEFORGE_MONITOR_SMTP_HOST)"))
        else:
            subject, body = alert_text(payload)
            out.append(send_email(smtp, list(rule.emails), subject, body))
    alert = AlertRepo(session, tenant_id).get(alert_id)
    alert.deliveries = [d.as_dict() for d in out]
    session.commit()
    return out


_BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "15min": timedelta(minutes=15)}


def _floor(at: datetime, size: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((at - epoch) // size) * size


def series(session: Session, tenant_id: str, *, entity: str | None = None, topic: str | None = None,
           bucket: str = "hour", start: datetime | None = None, end: datetime | None = None) -> list[dict[str, Any]]:
    """Per-bucket counts, negative/positive share and mean score of an entity's mentions (or of all items, or
    of a topic's), oldest first; empty buckets between the first and last are included with count 0."""
    if bucket not in _BUCKETS:
        raise InvalidRequestError(f"bucket: '{bucket}' is not one of {', '.join(_BUCKETS)}", param="bucket")
    size = _BUCKETS[bucket]
    end = end or utcnow()
    start = start or end - (timedelta(days=7) if bucket != "day" else timedelta(days=90))
    if start >= end:
        raise InvalidRequestError("start must be before end", param="start")
    if (end - start) / size > 5000:
        raise InvalidRequestError(f"{(end - start) / size:.0f} buckets of a {bucket}: ask for a shorter range or a "
                                  "larger bucket (at most 5000)", param="bucket")
    repo = ItemRepo(session, tenant_id)
    rows: list[tuple[datetime, str, float]]
    if entity:
        rows = [(m.published_at, m.polarity, m.score) for m in repo.mentions(entity, start, end)
                if topic is None or m.topic == topic]
    else:
        rows = [(i.published_at, i.polarity, i.score) for i in repo.in_range(start, end, topic)]
    if not rows:
        return []
    agg: dict[datetime, list[tuple[str, float]]] = {}
    for at, pol, score in rows:
        agg.setdefault(_floor(at, size), []).append((pol, score))
    out = []
    b, last = min(agg), max(agg)
    while b <= last:
        vals = agg.get(b, [])
        n = len(vals)
        neg = sum(1 for p, _ in vals if p == "negative")
        pos = sum(1 for p, _ in vals if p == "positive")
        out.append({"start": b.isoformat(), "count": n, "negative": neg, "positive": pos,
                    "negative_share": neg / n if n else None, "positive_share": pos / n if n else None,
                    "mean_score": sum(s for _, s in vals) / n if n else None})
        b += size
    return out


def source_state(s: MonitorSource) -> SourceState:
    return SourceState(url=s.url, kind=s.kind, interval_s=s.interval_s, etag=s.etag, last_modified=s.last_modified,
                       last_polled_at=s.last_polled_at, name=s.name, id=s.id)
