"""The declarative base of every table, and the column every tenant-owned table shares.

A table owned by a tenant mixes in :class:`TenantScoped`: its ``tenant_id`` column (a foreign key to
``tenants.id`` that deletes the rows with their tenant) is declared here once. Tables set ``tenant_index = True``
when they want the single-column index on it (the others lead a composite index with it). Queries filter on it
in one place, :class:`tuneforge.store.repositories.TenantRepo`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, ForeignKey
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from tuneforge.store.db import UTCDateTime

__all__ = ["Base", "TenantScoped"]


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class TenantScoped:
    """Mixin of the tables whose rows belong to one tenant."""

    #: whether ``tenant_id`` gets an index of its own (``ix_<table>_tenant_id``)
    tenant_index: ClassVar[bool] = False

    @declared_attr
    def tenant_id(cls) -> Mapped[str]:
        return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True if cls.tenant_index else None)
