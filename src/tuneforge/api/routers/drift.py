"""Live-input monitoring and drift, per fine-tuned model of a tenant.

``POST /v1/models/{model}/monitoring`` opts a model in: a sample of the inputs ``/v1/predict`` receives is logged
with the predictions (:mod:`tuneforge.store.input_log`; PII-masked when the model was trained with ``mask_pii``,
or when asked), pruned past the retention limit. ``GET /v1/models/{model}/drift?window=N`` reports on the last N
logged inputs against the model's training data (:mod:`tuneforge.evaluation.drift`); a report over the threshold
records an alert and POSTs it to the monitoring's webhook (the finance monitor's sender, signed with the secret).

The logging itself runs after the response is sent (a background task of the predict request, :data:`InputLog`),
and a failure there is logged, never returned: monitoring must not fail a prediction.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Query
from pydantic import BaseModel, Field, field_validator

from tuneforge import runs
from tuneforge.api.deps import (
    CurrentPrincipal,
    Models,
    PredictPrincipal,
    SessionDep,
    SettingsDep,
    StateDep,
    TrainPrincipal,
)
from tuneforge.api.model_refs import Servable, servable_model
from tuneforge.api.state import ServiceState
from tuneforge.errors import ConfigError, InvalidRequestError
from tuneforge.solutions.monitor.notify import Delivery, public_webhook, send_webhook
from tuneforge.store.db import utcnow
from tuneforge.store.input_log import (
    DriftAlert,
    DriftAlertRepo,
    InputLogRepo,
    ModelMonitoring,
    MonitoringRepo,
    log_inputs,
)
from tuneforge.store.models import File, Job, Model
from tuneforge.store.repositories import ModelRepo
from tuneforge.utils.net import check_public_url

__all__ = ["InputLog", "InputLogger", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["monitoring"])

#: the largest drift window (inputs compared with the reference in one report)
MAX_WINDOW = 5000
#: a drift report within this many minutes of the model's last alert refers to it instead of raising another
DEFAULT_COOLDOWN_MINUTES = 60


class MonitoringCreate(BaseModel):
    enabled: bool = True
    sample_rate: float = Field(1.0, gt=0, le=1, description="Share of predicted inputs logged (each at random).")
    retention: int = Field(10_000, ge=10, le=1_000_000, description="The most logged inputs kept; older ones "
                                                                     "are deleted as new ones come.")
    threshold: float | None = Field(None, ge=0.5, le=1, description="Drift when the domain classifier's ROC AUC "
                                                                    "is above this (default: the model's, 0.6).")
    mask_pii: bool | None = Field(None, description="Mask personal data before logging (default: as the model "
                                                    "was trained: on when it was trained with mask_pii).")
    webhook_url: str | None = Field(None, max_length=2000)
    webhook_secret: str | None = Field(None, max_length=200)
    alert_cooldown_minutes: int = Field(DEFAULT_COOLDOWN_MINUTES, ge=0, le=30 * 24 * 60, description=(
        "A drift within this many minutes of the last alert refers to that alert: no new alert or webhook (0: "
        "every drifting report alerts)."))

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return v or None


class MonitoringPublic(BaseModel):
    object: str = "model.monitoring"
    model: str
    enabled: bool
    sample_rate: float
    retention: int
    threshold: float | None
    mask_pii: bool
    webhook_url: str | None
    has_webhook_secret: bool
    alert_cooldown_minutes: int
    logged: int
    updated_at: datetime | None


class DriftAlertPublic(BaseModel):
    object: str = "drift.alert"
    id: str
    model: str
    score: float
    method: str
    threshold: float
    window: int
    deliveries: list[dict[str, Any]]
    created_at: datetime


class DriftPublic(BaseModel):
    object: str = "drift.report"
    model: str
    window: int
    drift: bool
    score: float
    method: str
    threshold: float
    details: dict[str, Any]
    alert: DriftAlertPublic | None = None


class DriftAlertList(BaseModel):
    object: str = "list"
    data: list[DriftAlertPublic]


@dataclass(frozen=True)
class _Target:
    """What a monitoring route is about."""

    #: what the settings, the log and the alerts are keyed by: a fine-tuned model's id, or a registry name (its
    #: versions share one log, so monitoring carries over a promotion)
    key: str
    #: the run folder reported on (a registry reference: the version it names, ``production`` by default)
    path: Path
    cache_key: str
    #: the training data the registry keeps with the version
    train_data: Path | None
    #: the fine-tuned model (its job's training file is the last resort for the reference)
    row: Model | None


def monitor_key(m: Servable) -> str:
    """The monitoring key of a served model: the registry name for a registry version, else the model's id."""
    return m.version.name if m.version is not None else m.model_id


def _target(models: ModelRepo, state: ServiceState, model: str) -> _Target:
    m = servable_model(models, state, model)  # another tenant's model, or a name it does not have: 404
    if m.version is not None:
        return _Target(monitor_key(m), Path(m.path), m.cache_key, m.version.train_data, None)
    return _Target(m.model_id, Path(m.path), m.cache_key, None, models.servable(m.model_id))


def _public(model_id: str, row: ModelMonitoring | None, logged: int) -> MonitoringPublic:
    if row is None:
        return MonitoringPublic(model=model_id, enabled=False, sample_rate=0.0, retention=0, threshold=None,
                                mask_pii=False, webhook_url=None, has_webhook_secret=False,
                                alert_cooldown_minutes=DEFAULT_COOLDOWN_MINUTES, logged=logged, updated_at=None)
    return MonitoringPublic(model=model_id, enabled=row.enabled, sample_rate=row.sample_rate,
                            retention=row.retention, threshold=row.threshold, mask_pii=row.mask_pii,
                            webhook_url=row.webhook_url, has_webhook_secret=bool(row.webhook_secret),
                            alert_cooldown_minutes=row.alert_cooldown_minutes, logged=logged,
                            updated_at=row.updated_at)


def _alert_public(a: DriftAlert) -> DriftAlertPublic:
    return DriftAlertPublic(id=a.id, model=a.model_id, score=a.score, method=a.method, threshold=a.threshold,
                            window=a.window, deliveries=list(a.deliveries or []), created_at=a.created_at)


def _trained_with_masking(path: Path) -> bool:
    try:
        manifest = runs.read_manifest(path, require_weights=False)
    except Exception:  # noqa: BLE001 - a manifest we cannot read says nothing about masking
        return False
    return bool((manifest.get("config") or {}).get("mask_pii"))


@router.post("/models/{model}/monitoring", response_model=MonitoringPublic,
             summary="Log a sample of a model's inputs and predictions (opt in)")
def set_monitoring(model: str, body: MonitoringCreate, principal: TrainPrincipal, models: Models,
                   session: SessionDep, state: StateDep, settings: SettingsDep) -> MonitoringPublic:
    t = _target(models, state, model)
    if body.webhook_url and not settings.allow_private_urls:
        check_public_url(body.webhook_url, param="webhook_url")
    mask = body.mask_pii if body.mask_pii is not None else _trained_with_masking(t.path)
    repo = MonitoringRepo(session, principal.tenant_id)
    values: dict[str, Any] = {"enabled": body.enabled, "sample_rate": body.sample_rate,
                              "retention": body.retention, "threshold": body.threshold, "mask_pii": mask,
                              "webhook_url": body.webhook_url, "alert_cooldown_minutes": body.alert_cooldown_minutes}
    if "webhook_secret" in body.model_fields_set or body.webhook_url is None:
        values["webhook_secret"] = body.webhook_secret
    row = repo.configure(t.key, **values)
    session.flush()
    logs = InputLogRepo(session, principal.tenant_id)
    logs.prune(t.key, row.retention)  # a lower retention applies to what is logged already
    session.commit()
    return _public(t.key, row, logs.count(t.key))


@router.get("/models/{model}/monitoring", response_model=MonitoringPublic, summary="A model's monitoring")
def get_monitoring(model: str, principal: CurrentPrincipal, models: Models, session: SessionDep,
                   state: StateDep) -> MonitoringPublic:
    t = _target(models, state, model)
    return _public(t.key, MonitoringRepo(session, principal.tenant_id).for_model(t.key),
                   InputLogRepo(session, principal.tenant_id).count(t.key))


@router.delete("/models/{model}/monitoring", response_model=MonitoringPublic,
               summary="Stop monitoring a model and delete its logged inputs")
def delete_monitoring(model: str, principal: TrainPrincipal, models: Models, session: SessionDep,
                      state: StateDep) -> MonitoringPublic:
    t = _target(models, state, model)
    repo = MonitoringRepo(session, principal.tenant_id)
    row = repo.for_model(t.key)
    if row is not None:
        repo.delete(row)
    InputLogRepo(session, principal.tenant_id).clear(t.key)
    session.commit()
    return _public(t.key, None, 0)


def _reference(session: Any, tenant_id: str, t: _Target, state: ServiceState) -> Path:
    """The model's training data: the file its manifest names when it is still there, else the copy the registry
    keeps with the version, else the fine-tuning job's training file in storage."""
    from tuneforge.evaluation.drift import reference_file

    try:
        return reference_file(t.path)
    except ConfigError:
        pass
    if t.train_data is not None and Path(t.train_data).is_file():
        return Path(t.train_data)
    job = session.get(Job, t.row.job_id) if t.row is not None else None
    f = session.get(File, job.training_file_id) if job is not None and job.tenant_id == tenant_id else None
    if f is not None and state.storage.exists(f.storage_key):
        return Path(state.storage.local_path(f.storage_key))
    raise InvalidRequestError(f"model: the training data of '{t.key}' is not kept any more (its training file was "
                              "deleted), so there is nothing to compare its inputs with", param="model",
                              code="no_reference_data")


def _deliver(state: ServiceState, tenant_id: str, alert_id: str, url: str, secret: str | None,
             payload: dict[str, Any]) -> None:
    sender = send_webhook if state.settings.allow_private_urls else public_webhook
    try:
        delivery = sender(url, payload, secret=secret)
    except Exception as e:  # noqa: BLE001 - recorded on the alert, like a refused delivery
        delivery = Delivery("webhook", url, False, f"{type(e).__name__}: {e}")
    with state.sessions() as session:
        alert = DriftAlertRepo(session, tenant_id).find(alert_id)
        if alert is not None:
            alert.deliveries = [*(alert.deliveries or []), delivery.as_dict()]
            session.commit()


@router.get("/models/{model}/drift", response_model=DriftPublic,
            summary="Drift of a model's last logged inputs from its training data")
def get_drift(model: str, principal: CurrentPrincipal, models: Models, session: SessionDep, state: StateDep,
              background: BackgroundTasks,
              window: Annotated[int, Query(ge=10, le=MAX_WINDOW, description="The last N logged inputs.")] = 200,
              ) -> DriftPublic:
    from tuneforge.evaluation.drift import (
        DEFAULT_THRESHOLD,
        RunModel,
        drift_report,
        load_examples,
        model_threshold,
        reference_key,
    )

    t = _target(models, state, model)
    path = t.path
    config = MonitoringRepo(session, principal.tenant_id).for_model(t.key)
    rows = InputLogRepo(session, principal.tenant_id).window(t.key, window)
    if len(rows) < 10:
        raise InvalidRequestError(f"model: {len(rows)} inputs of '{t.key}' are logged; a drift report needs at least "
                                  "10", param="model", code="not_enough_inputs",
                                  hint=f"enable logging with POST /v1/models/{t.key}/monitoring and predict more")
    ref_path = _reference(session, principal.tenant_id, t, state)
    inputs = [r.input for r in rows]
    threshold = (config.threshold if config is not None and config.threshold is not None
                 else model_threshold(path) or DEFAULT_THRESHOLD)
    webhook = (config.webhook_url, config.webhook_secret) if config is not None and config.webhook_url else None
    cooldown = config.alert_cooldown_minutes if config is not None else DEFAULT_COOLDOWN_MINUTES
    session.rollback()  # no transaction open while the model runs
    entry = state.inference.cache.get_entry(f"drift:{t.cache_key}", lambda: RunModel(path))
    assert isinstance(entry, RunModel)
    report = drift_report(entry, load_examples(ref_path, entry.task), entry.examples(inputs), threshold=threshold,
                          reference_key=reference_key(ref_path), cache=entry.reference_cache)
    public = DriftPublic(model=t.key, window=len(rows), **report.to_json())
    recent = _recent_alert(session, principal.tenant_id, t.key, cooldown) if report.drift else None
    if recent is not None:  # within the cooldown of the last alert: that alert, no new event or webhook
        public.alert = _alert_public(recent)
    elif report.drift:
        alert = DriftAlertRepo(session, principal.tenant_id).add(DriftAlert(
            id=_new_alert_id(), model_id=t.key, score=report.score, method=report.method,
            threshold=report.threshold, window=len(rows), details=report.details, deliveries=[]))
        session.commit()
        public.alert = _alert_public(alert)
        if webhook is not None:
            payload = {"type": "drift.alert", "alert_id": alert.id, "model": t.key, "score": report.score,
                       "method": report.method, "threshold": report.threshold, "window": len(rows),
                       "checks": report.details.get("checks", []), "at": alert.created_at.isoformat()}
            background.add_task(_deliver, state, principal.tenant_id, alert.id, webhook[0], webhook[1], payload)
    return public


def _recent_alert(session: Any, tenant_id: str, key: str, cooldown_minutes: int) -> DriftAlert | None:
    if cooldown_minutes <= 0:
        return None
    since = utcnow() - timedelta(minutes=cooldown_minutes)
    page = DriftAlertRepo(session, tenant_id).list(limit=1, where=(DriftAlert.model_id == key)
                                                   & (DriftAlert.created_at >= since))
    return page.data[0] if page.data else None


def _new_alert_id() -> str:
    from tuneforge.store.ids import new_id

    return new_id("driftalert")


@router.get("/models/{model}/drift/alerts", response_model=DriftAlertList, summary="A model's drift alerts")
def list_drift_alerts(model: str, principal: CurrentPrincipal, models: Models, session: SessionDep,
                      state: StateDep,
                      limit: Annotated[int, Query(ge=1, le=100)] = 20) -> DriftAlertList:
    t = _target(models, state, model)
    page = DriftAlertRepo(session, principal.tenant_id).list(limit=limit, where=DriftAlert.model_id == t.key)
    return DriftAlertList(data=[_alert_public(a) for a in page.data])


# ------------------------------------------------------------------------------------- the predict route's hook
class InputLogger:
    """Hands one request's inputs and predictions to a background task that logs a sample of them when the
    tenant monitors the model (:func:`tuneforge.store.input_log.log_inputs`)."""

    def __init__(self, state: ServiceState, tenant_id: str, background: BackgroundTasks) -> None:
        self.state, self.tenant_id, self.background = state, tenant_id, background

    def __call__(self, model: Servable, inputs: list[Any], predictions: list[Any]) -> None:
        try:
            self.background.add_task(_log_inputs, self.state, self.tenant_id, monitor_key(model), model.model_id,
                                     list(inputs), list(predictions))
        except Exception:  # noqa: BLE001 - monitoring never fails a prediction
            log.exception("could not queue the input log of %s", model.model_id)


_rng = random.SystemRandom()


def _log_inputs(state: ServiceState, tenant_id: str, key: str, served_by: str, inputs: list[Any],
                predictions: list[Any]) -> None:
    try:
        with state.sessions() as session:
            log_inputs(session, tenant_id, key, inputs, predictions, rng=_rng, served_by=served_by)
    except Exception:  # noqa: BLE001 - after the response: logged, never raised
        log.exception("logging the inputs of %s failed", served_by)


def _input_logger(state: StateDep, principal: PredictPrincipal, background: BackgroundTasks) -> InputLogger:
    return InputLogger(state, principal.tenant_id, background)


#: what ``/v1/predict`` declares to log its inputs: ``input_log(servable, inputs, predictions)``
InputLog = Annotated[InputLogger, Depends(_input_logger)]
