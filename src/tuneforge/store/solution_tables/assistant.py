"""Tables of the assistant solution (see :mod:`tuneforge.solutions.assistant`).
Every row carries ``tenant_id``.

- ``assistants``: a tenant's deployed assistant — its bundle in artifact storage (knowledge-base passages and
  index), the tenant's fine-tuned intent model it uses (optional), and its config (threshold, handover
  intents, templates).
- ``assistant_sessions`` and ``assistant_turns``: conversations, one row per user message and per reply.
- ``assistant_feedback``: whether an answer helped, and the right intent or answer; exported as training data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tuneforge.store.base import Base, TenantScoped
from tuneforge.store.db import utcnow

__all__ = ["Assistant", "AssistantFeedback", "AssistantSession", "AssistantTurn"]


class Assistant(TenantScoped, Base):
    __tablename__ = "assistants"
    __table_args__ = (Index("ix_assistants_tenant_created", "tenant_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    storage_key: Mapped[str] = mapped_column(String(255))
    intent_model: Mapped[str | None] = mapped_column(String(255))
    encoder: Mapped[str] = mapped_column(String(255))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    passages: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AssistantSession(TenantScoped, Base):
    __tablename__ = "assistant_sessions"
    __table_args__ = (Index("ix_assistant_sessions_tenant_created", "tenant_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    assistant_id: Mapped[str] = mapped_column(ForeignKey("assistants.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | handed_over
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AssistantTurn(TenantScoped, Base):
    __tablename__ = "assistant_turns"
    tenant_index = True
    __table_args__ = (UniqueConstraint("session_id", "seq", name="uq_assistant_turns_session_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("assistant_sessions.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    text: Mapped[str] = mapped_column(Text)
    reply: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AssistantFeedback(TenantScoped, Base):
    __tablename__ = "assistant_feedback"
    __table_args__ = (Index("ix_assistant_feedback_tenant_created", "tenant_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    assistant_id: Mapped[str] = mapped_column(ForeignKey("assistants.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str | None] = mapped_column(ForeignKey("assistant_sessions.id", ondelete="SET NULL"))
    message: Mapped[str] = mapped_column(Text)
    reply: Mapped[str | None] = mapped_column(Text)
    intent: Mapped[str | None] = mapped_column(String(255))
    helpful: Mapped[bool] = mapped_column(Boolean)
    correct_intent: Mapped[str | None] = mapped_column(String(255))
    correct_answer: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
