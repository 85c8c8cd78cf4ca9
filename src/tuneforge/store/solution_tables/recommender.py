"""Tables of the recommender solution (see :mod:`tuneforge.solutions.recommender`). Every row carries ``tenant_id``.

- ``recommenders``: a tenant's registered recommender — its bundle folder in artifact storage and a summary.
- ``recommender_events``: interactions posted after training (user, item, optional rating); they join the
  user's training history when recommending, so a new like changes the next recommendations at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tuneforge.store.base import Base, TenantScoped
from tuneforge.store.db import utcnow

__all__ = ["Recommender", "RecommenderEvent"]


class Recommender(TenantScoped, Base):
    __tablename__ = "recommenders"
    __table_args__ = (Index("ix_recommenders_tenant_created", "tenant_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    storage_key: Mapped[str] = mapped_column(String(255))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecommenderEvent(TenantScoped, Base):
    __tablename__ = "recommender_events"
    tenant_index = True
    __table_args__ = (Index("ix_recommender_events_user", "recommender_id", "user_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recommender_id: Mapped[str] = mapped_column(ForeignKey("recommenders.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(255))
    item_id: Mapped[str] = mapped_column(String(255))
    rating: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
