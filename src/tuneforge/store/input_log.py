"""Live-input monitoring: which models log their inputs (opt-in, with a sample rate and a retention limit), the
sampled log of inputs and predictions, and the drift alerts raised on it. Every row belongs to one tenant.

- ``model_monitoring``: one row per monitored model of a tenant: its sample rate (the share of predicted inputs
  kept), its retention (the most log rows kept; older ones are pruned as new ones come), the drift threshold and
  the webhook its alerts go to, and whether texts are PII-masked before they are stored.
- ``input_log``: one row per logged input, with the prediction the service returned.
- ``drift_alerts``: a drift report that crossed its threshold, with what the webhook answered.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, UniqueConstraint, delete, func
from sqlalchemy.orm import Mapped, Session, mapped_column

from tuneforge.store.base import Base, TenantScoped
from tuneforge.store.db import utcnow
from tuneforge.store.ids import new_id
from tuneforge.store.repositories import TenantRepo

__all__ = ["DriftAlert", "DriftAlertRepo", "InputLogEntry", "InputLogRepo", "ModelMonitoring", "MonitoringRepo",
           "log_inputs", "mask_value", "sampled"]


class ModelMonitoring(TenantScoped, Base):
    __tablename__ = "model_monitoring"
    __table_args__ = (UniqueConstraint("tenant_id", "model_id", name="uq_model_monitoring_model"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sample_rate: Mapped[float] = mapped_column(Float, default=1.0)
    retention: Mapped[int] = mapped_column(Integer, default=10_000)
    mask_pii: Mapped[bool] = mapped_column(Boolean, default=False)
    threshold: Mapped[float | None] = mapped_column(Float)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    alert_cooldown_minutes: Mapped[int] = mapped_column(Integer, default=60)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class InputLogEntry(TenantScoped, Base):
    __tablename__ = "input_log"
    __table_args__ = (Index("ix_input_log_model", "tenant_id", "model_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(String(255))
    #: the model that answered: the fine-tuned model's id, or the registry version (``sst@3``)
    served_by: Mapped[str] = mapped_column(String(255), default="")
    input: Mapped[Any] = mapped_column(JSON)
    prediction: Mapped[Any] = mapped_column(JSON)
    masked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DriftAlert(TenantScoped, Base):
    __tablename__ = "drift_alerts"
    __table_args__ = (Index("ix_drift_alerts_model", "tenant_id", "model_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(255))
    score: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[float] = mapped_column(Float)
    window: Mapped[int] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    deliveries: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitoringRepo(TenantRepo[ModelMonitoring]):
    model = ModelMonitoring
    noun = "monitoring setting"
    param = "model"

    def for_model(self, model_id: str) -> ModelMonitoring | None:
        return cast(ModelMonitoring | None,
                    self.session.scalar(self.select().where(ModelMonitoring.model_id == model_id)))

    def configure(self, model_id: str, **values: Any) -> ModelMonitoring:
        """Create or update the model's monitoring with ``values`` (columns of :class:`ModelMonitoring`)."""
        row = self.for_model(model_id)
        if row is None:
            row = self.add(ModelMonitoring(id=new_id("mon"), model_id=model_id))
        for k, v in values.items():
            setattr(row, k, v)
        row.updated_at = utcnow()
        return row


class InputLogRepo(TenantRepo[InputLogEntry]):
    model = InputLogEntry
    noun = "logged input"

    def add_many(self, model_id: str, rows: Sequence[tuple[Any, Any]], *, masked: bool, served_by: str = "") -> None:
        for inp, pred in rows:
            self.add(InputLogEntry(model_id=model_id, served_by=served_by or model_id, input=inp, prediction=pred,
                                   masked=masked))

    def count(self, model_id: str) -> int:
        return int(self.session.scalar(self.select(func.count()).where(InputLogEntry.model_id == model_id)) or 0)

    def prune(self, model_id: str, keep: int) -> int:
        """Delete the model's rows past the newest ``keep``; returns how many went."""
        cutoff = self.session.scalar(self.select(InputLogEntry.id).where(InputLogEntry.model_id == model_id)
                                     .order_by(InputLogEntry.id.desc()).offset(keep).limit(1))
        if cutoff is None:
            return 0
        result = self.session.execute(delete(InputLogEntry).where(
            InputLogEntry.tenant_id == self.tenant_id, InputLogEntry.model_id == model_id,
            InputLogEntry.id <= cutoff))
        return int(getattr(result, "rowcount", 0) or 0)

    def window(self, model_id: str, n: int) -> list[InputLogEntry]:
        """The model's newest ``n`` rows, oldest first."""
        rows = list(self.session.scalars(self.select().where(InputLogEntry.model_id == model_id)
                                         .order_by(InputLogEntry.id.desc()).limit(n)))
        return rows[::-1]

    def clear(self, model_id: str) -> None:
        self.session.execute(delete(InputLogEntry).where(InputLogEntry.tenant_id == self.tenant_id,
                                                         InputLogEntry.model_id == model_id))


class DriftAlertRepo(TenantRepo[DriftAlert]):
    model = DriftAlert
    noun = "drift alert"
    param = "alert_id"


def sampled(n: int, rate: float, rng: random.Random) -> list[int]:
    """The indices of ``n`` inputs kept at ``rate`` (each independently)."""
    if rate >= 1.0:
        return list(range(n))
    return [i for i in range(n) if rng.random() < rate]


def mask_value(value: Any, mask: Callable[[list[str]], list[str]]) -> Any:
    """``value`` (an input: a string, or an object of strings and string lists) with every string masked."""
    strings: list[str] = []

    def collect(v: Any) -> None:
        if isinstance(v, str):
            strings.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                collect(x)
        elif isinstance(v, list):
            for x in v:
                collect(x)

    collect(value)
    masked = iter(mask(strings))

    def rebuild(v: Any) -> Any:
        if isinstance(v, str):
            return next(masked)
        if isinstance(v, dict):
            return {k: rebuild(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rebuild(x) for x in v]
        return v

    return rebuild(value)


def pii_masker() -> Callable[[list[str]], list[str]]:
    """Texts with their personal data masked (:mod:`tuneforge.data.pii`, the masker ``--mask-pii`` uses)."""
    from tuneforge.data.pii import PiiDetector, mask_text

    detector = PiiDetector()

    def mask(texts: list[str]) -> list[str]:
        return [mask_text(t, spans)[0] for t, spans in zip(texts, detector.find_many(texts), strict=True)]

    return mask


def log_inputs(session: Session, tenant_id: str, model_id: str, inputs: Sequence[Any],
               predictions: Sequence[Any], *, rng: random.Random | None = None,
               mask: Callable[[list[str]], list[str]] | None = None, served_by: str = "") -> int:
    """Log a sample of one request's inputs and predictions when the tenant monitors ``model_id`` (a fine-tuned
    model's id or a registry name; ``served_by`` the model that answered, a registry version), prune past its
    retention, and commit; returns how many were logged (0 when the model is not monitored). ``mask`` is the PII
    masker to use when the model's monitoring masks (default: :func:`pii_masker`)."""
    config = MonitoringRepo(session, tenant_id).for_model(model_id)
    if config is None or not config.enabled:
        session.rollback()
        return 0
    keep = sampled(len(inputs), config.sample_rate, rng or random.Random())
    if not keep:
        session.rollback()
        return 0
    rows = [(inputs[i], predictions[i]) for i in keep]
    if config.mask_pii:
        masker = mask or pii_masker()
        rows = [(mask_value(inp, masker), mask_value(pred, masker)) for inp, pred in rows]
    log = InputLogRepo(session, tenant_id)
    log.add_many(model_id, rows, masked=config.mask_pii, served_by=served_by)
    session.flush()
    log.prune(model_id, config.retention)
    session.commit()
    return len(rows)
