"""Tables of the service's model registry (:mod:`tuneforge.store.registry.service`). Every row carries
``tenant_id``; names are unique per tenant, so two tenants may both have an ``sst``.

- ``registry_names``: a tenant's model name, the number its next version gets (never reused) and its test set.
- ``registry_versions``: an immutable version: its run folder (and training file) in artifact storage, metrics.
- ``registry_aliases``: an alias and the version it points at now (null once removed) with its earlier targets.
- ``registry_events``: the audit log (who, when, what, why, metrics at the time).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tuneforge.store import models  # noqa: F401  (the tenants table the foreign keys point at)
from tuneforge.store.base import Base, TenantScoped
from tuneforge.store.db import utcnow

__all__ = ["RegistryAlias", "RegistryEvent", "RegistryName", "RegistryVersion"]


class RegistryName(TenantScoped, Base):
    __tablename__ = "registry_names"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_registry_names_tenant_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    next_version: Mapped[int] = mapped_column(Integer, default=1)
    test_data_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RegistryVersion(TenantScoped, Base):
    __tablename__ = "registry_versions"
    __table_args__ = (UniqueConstraint("name_id", "version", name="uq_registry_versions_name_version"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name_id: Mapped[str] = mapped_column(ForeignKey("registry_names.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(255))
    train_data_key: Mapped[str | None] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(String(255), default="")
    parent: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RegistryAlias(TenantScoped, Base):
    __tablename__ = "registry_aliases"
    __table_args__ = (UniqueConstraint("name_id", "alias", name="uq_registry_aliases_name_alias"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name_id: Mapped[str] = mapped_column(ForeignKey("registry_names.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(32))
    #: the version it points at; null once removed (its earlier targets are kept for a rollback)
    version: Mapped[int | None] = mapped_column(Integer)
    #: the versions it pointed at before, oldest first (a rollback takes the last)
    previous: Mapped[list[int]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RegistryEvent(TenantScoped, Base):
    __tablename__ = "registry_events"
    __table_args__ = (Index("ix_registry_events_name", "name_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name_id: Mapped[str] = mapped_column(ForeignKey("registry_names.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    alias: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int | None] = mapped_column(Integer)
    previous: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(255), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
