"""Tables of the monitor solution (see :mod:`tuneforge.solutions.monitor`). Every row carries ``tenant_id``.

``monitor_items`` holds each classified item once (unique text hash per tenant); ``monitor_mentions`` is the
time series: one row per item and entity it mentions (with the item's time, polarity, score and topic), so a
series per entity or topic is one indexed range query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tuneforge.store.base import Base, TenantScoped
from tuneforge.store.db import utcnow

__all__ = ["MonitorAlert", "MonitorItem", "MonitorMention", "MonitorRule", "MonitorSource", "MonitorWatch"]


class MonitorWatch(TenantScoped, Base):
    """A watch-list entry: an entity (ticker or company) and the aliases it is mentioned by."""

    __tablename__ = "monitor_watch"
    tenant_index = True
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_monitor_watch_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorSource(TenantScoped, Base):
    """An RSS/Atom feed or a web page polled every ``interval_s`` seconds."""

    __tablename__ = "monitor_sources"
    tenant_index = True
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    kind: Mapped[str] = mapped_column(String(8))  # feed | page
    url: Mapped[str] = mapped_column(String(2000))
    interval_s: Mapped[int] = mapped_column(Integer, default=900)
    etag: Mapped[str | None] = mapped_column(String(255))
    last_modified: Mapped[str | None] = mapped_column(String(64))
    last_polled_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorItem(TenantScoped, Base):
    """One classified item."""

    __tablename__ = "monitor_items"
    __table_args__ = (UniqueConstraint("tenant_id", "text_hash", name="uq_monitor_items_hash"),
                      Index("ix_monitor_items_tenant_published", "tenant_id", "published_at"),
                      Index("ix_monitor_items_tenant_created", "tenant_id", "created_at"))
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    source: Mapped[str] = mapped_column(String(255), default="")
    url: Mapped[str | None] = mapped_column(String(2000))
    guid: Mapped[str | None] = mapped_column(String(500))
    title: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64))
    lang: Mapped[str] = mapped_column(String(8))
    published_at: Mapped[datetime]
    label: Mapped[str] = mapped_column(String(64))
    polarity: Mapped[str] = mapped_column(String(8))
    score: Mapped[float] = mapped_column(Float)
    topic: Mapped[str | None] = mapped_column(String(64))
    entities: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorMention(TenantScoped, Base):
    """An item's mention of one entity: the rows the time series and the detection read."""

    __tablename__ = "monitor_mentions"
    __table_args__ = (Index("ix_monitor_mentions_entity", "tenant_id", "entity", "published_at"),
                      Index("ix_monitor_mentions_topic", "tenant_id", "topic", "published_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("monitor_items.id", ondelete="CASCADE"), index=True)
    entity: Mapped[str] = mapped_column(String(100))
    topic: Mapped[str | None] = mapped_column(String(64))
    published_at: Mapped[datetime]
    polarity: Mapped[str] = mapped_column(String(8))
    score: Mapped[float] = mapped_column(Float)


class MonitorRule(TenantScoped, Base):
    """An alert rule: which entity (or ``*``: each entity), what detection, and where alerts go."""

    __tablename__ = "monitor_rules"
    tenant_index = True
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    entity: Mapped[str] = mapped_column(String(100), default="*")
    metric: Mapped[str] = mapped_column(String(32))
    window_minutes: Mapped[int] = mapped_column(Integer)
    baseline_minutes: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[float] = mapped_column(Float)
    min_items: Mapped[int] = mapped_column(Integer)
    min_increase: Mapped[float] = mapped_column(Float, default=0.2)
    cooldown_minutes: Mapped[int] = mapped_column(Integer)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    emails: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorAlert(TenantScoped, Base):
    """A fired alert, with the items that triggered it and what each delivery channel answered."""

    __tablename__ = "monitor_alerts"
    __table_args__ = (Index("ix_monitor_alerts_tenant_created", "tenant_id", "created_at"),
                      Index("ix_monitor_alerts_rule_entity", "rule_id", "entity", "at"))
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    rule_id: Mapped[str] = mapped_column(ForeignKey("monitor_rules.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    value: Mapped[float] = mapped_column(Float)
    expected: Mapped[float] = mapped_column(Float)
    z: Mapped[float] = mapped_column(Float)
    window_items: Mapped[int] = mapped_column(Integer)
    item_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    deliveries: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
