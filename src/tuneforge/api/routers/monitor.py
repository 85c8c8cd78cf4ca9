"""/v1/solutions/monitor: API routes of :mod:`tuneforge.solutions.monitor`.

Pushing items and reading series, charts and alerts take the ``predict`` scope; configuring the watch-list,
alert rules and polled sources takes ``train``. Alerts fired by a push are delivered (webhook, e-mail) after the
response is sent. Polled sources are fetched by ``tuneforge solution monitor watch`` (or on demand with
``POST /sources/{id}/poll``); the service's job worker does not poll.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Response
from pydantic import BaseModel, Field, field_validator
from sqlalchemy.orm import Session

from tuneforge.api.deps import Models, PredictPrincipal, SessionDep, SettingsDep, StateDep, TrainPrincipal
from tuneforge.api.routers.inference import fine_tuned
from tuneforge.api.schemas import ListPublic
from tuneforge.api.state import ServiceState
from tuneforge.errors import InvalidRequestError, TuneforgeError
from tuneforge.solutions.monitor.classify import Classified, SentimentClassifier
from tuneforge.solutions.monitor.detect import METRICS, RuleParams
from tuneforge.solutions.monitor.ingest import Poller, RawItem, parse_time
from tuneforge.solutions.monitor.notify import public_webhook, send_webhook
from tuneforge.solutions.monitor.service import (
    AlertRepo,
    ItemRepo,
    RuleRepo,
    SourceRepo,
    WatchRepo,
    alert_payload,
    deliver,
    ingest_items,
    series,
    smtp_from_env,
    source_state,
)
from tuneforge.store.ids import new_id
from tuneforge.store.repositories import ModelRepo
from tuneforge.store.solution_tables.monitor import MonitorRule, MonitorSource, MonitorWatch
from tuneforge.tasks import get_task, task_names
from tuneforge.utils.net import check_public_url

router = APIRouter(prefix="/v1/solutions/monitor", tags=["solutions"])

MAX_ITEMS = 500


# ------------------------------------------------------------------------------------------------- schemas
class ItemIn(BaseModel):
    text: str = Field("", max_length=20_000)
    title: str = Field("", max_length=1000)
    url: str | None = Field(None, max_length=2000)
    guid: str | None = Field(None, max_length=500)
    published_at: datetime | None = None
    source: str = Field("api", max_length=255)
    label: str | None = Field(None, max_length=64, description="A sentiment already known (no model needed).")
    score: float | None = Field(None, ge=-1, le=1)
    topic: str | None = Field(None, max_length=64)


class ItemsCreate(BaseModel):
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS)
    model: str | None = Field(None, description="Fine-tuned classification model for English items "
                                                "(and for Chinese ones when model_zh is not given).")
    model_zh: str | None = Field(None, description="Fine-tuned classification model for Chinese items.")


class WatchCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    aliases: list[str] = Field(default_factory=list, max_length=50)


class RuleCreate(BaseModel):
    name: str = Field("", max_length=100)
    entity: str = Field("*", min_length=1, max_length=100, description="An entity, or * for each entity.")
    metric: Literal["negative_share", "volume", "negative_volume"] = "negative_share"
    window_minutes: int = Field(360, ge=1, le=30 * 24 * 60)
    baseline_minutes: int = Field(7 * 24 * 60, ge=1, le=365 * 24 * 60)
    threshold: float = Field(3.0, gt=0, le=100)
    min_items: int = Field(5, ge=1, le=100_000)
    min_increase: float = Field(0.2, ge=0, lt=1)
    cooldown_minutes: int = Field(360, ge=0, le=30 * 24 * 60)
    webhook_url: str | None = Field(None, max_length=2000)
    webhook_secret: str | None = Field(None, max_length=200)
    emails: list[str] = Field(default_factory=list, max_length=20)
    enabled: bool = True

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return v or None

    @field_validator("emails")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if "@" not in e or " " in e.strip()]
        if bad:
            raise ValueError(f"not e-mail addresses: {', '.join(bad)}")
        return [e.strip() for e in v]


class RuleUpdate(BaseModel):
    name: str | None = None
    enabled: bool | None = None
    threshold: float | None = Field(None, gt=0, le=100)
    min_items: int | None = Field(None, ge=1)
    cooldown_minutes: int | None = Field(None, ge=0)
    webhook_url: str | None = None
    emails: list[str] | None = None


class SourceCreate(BaseModel):
    url: str = Field(min_length=8, max_length=2000)
    kind: Literal["feed", "page"] = "feed"
    name: str = Field("", max_length=100)
    interval_s: int = Field(900, ge=60, le=7 * 86400)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL")
        return v


def _watch(w: MonitorWatch) -> dict[str, Any]:
    return {"id": w.id, "object": "monitor.watch", "name": w.name, "aliases": list(w.aliases or []),
            "created_at": int(w.created_at.timestamp())}


def _rule(r: MonitorRule) -> dict[str, Any]:
    return {"id": r.id, "object": "monitor.rule", "name": r.name, "entity": r.entity, "metric": r.metric,
            "window_minutes": r.window_minutes, "baseline_minutes": r.baseline_minutes, "threshold": r.threshold,
            "min_items": r.min_items, "min_increase": r.min_increase, "cooldown_minutes": r.cooldown_minutes,
            "webhook_url": r.webhook_url, "has_webhook_secret": bool(r.webhook_secret), "emails": list(r.emails or []),
            "enabled": r.enabled, "created_at": int(r.created_at.timestamp())}


def _source(s: MonitorSource) -> dict[str, Any]:
    return {"id": s.id, "object": "monitor.source", "name": s.name, "kind": s.kind, "url": s.url,
            "interval_s": s.interval_s, "last_polled_at": s.last_polled_at.isoformat() if s.last_polled_at else None,
            "last_status": s.last_status, "created_at": int(s.created_at.timestamp())}


def _item(i: Any) -> dict[str, Any]:
    return {"id": i.id, "object": "monitor.item", "source": i.source, "url": i.url, "title": i.title,
            "text": i.text, "lang": i.lang, "published_at": i.published_at.isoformat(), "label": i.label,
            "polarity": i.polarity, "score": i.score, "topic": i.topic, "entities": list(i.entities or [])}


# ----------------------------------------------------------------------------------------------- classify
def _classifier(state: ServiceState, models: ModelRepo, model: str | None, model_zh: str | None
                ) -> SentimentClassifier | None:
    def fn(name: str | None, param: str) -> Any:
        if not name:
            return None
        m = fine_tuned(models, state, name)  # a fine-tuned model or a kept checkpoint of one
        if m.task not in task_names() or not get_task(m.task).sequence_level:  # one prediction per text
            raise InvalidRequestError(f"{param}: '{name}' is a {m.task} model; the monitor needs a classification "
                                      "model (e.g. one trained on twitter_financial_news_sentiment).", param=param)
        path, model_id = state.storage.local_path(m.storage_key), m.id
        return lambda texts: state.inference.predict(model_id, path, texts)[0]

    en, zh = fn(model, "model"), fn(model_zh, "model_zh")
    return SentimentClassifier(en, zh) if en or zh else None


def _deliver_all(state: ServiceState, tenant_id: str, alert_ids: list[str]) -> None:
    smtp = smtp_from_env()
    sender = send_webhook if state.settings.allow_private_urls else public_webhook
    for alert_id in alert_ids:
        with state.sessions() as session:
            deliver(session, tenant_id, alert_id, smtp=smtp, send_webhook_fn=sender)


def _ingest(session: Session, state: ServiceState, tenant_id: str, raw: list[RawItem],
            given: list[dict[str, Any] | None], classifier: SentimentClassifier | None,
            background: BackgroundTasks) -> dict[str, Any]:
    classify = None
    if classifier is not None:
        def classify(texts: list[str]) -> list[Classified]:
            return classifier(texts)
    session.rollback()  # no transaction open while the model runs
    report = ingest_items(session, tenant_id, raw, classify=classify, given=given)
    alerts = AlertRepo(session, tenant_id)
    payloads = [alert_payload(session, tenant_id, alerts.get(a)) for a in report.alert_ids]
    session.rollback()  # end the read transaction: the deliveries after the response write in their own
    if report.alert_ids:
        background.add_task(_deliver_all, state, tenant_id, report.alert_ids)
    return {"object": "monitor.ingest", "received": report.received, "stored": report.stored,
            "duplicates": report.duplicates, "item_ids": report.item_ids, "alerts": payloads}


# ------------------------------------------------------------------------------------------------- items
@router.post("/items", summary="Push news items (classified, stored, checked against the alert rules)")
def push_items(body: ItemsCreate, principal: PredictPrincipal, session: SessionDep, state: StateDep,
               background: BackgroundTasks) -> dict[str, Any]:
    models = ModelRepo(session, principal.tenant_id)
    classifier = _classifier(state, models, body.model, body.model_zh)
    raw, given = [], []
    for k, it in enumerate(body.items):
        if not (it.text.strip() or it.title.strip()):
            raise InvalidRequestError(f"items[{k}]: give a text or a title", param=f"items[{k}].text")
        raw.append(RawItem(text=it.text.strip(), title=it.title.strip(), url=it.url, guid=it.guid,
                           published_at=parse_time(it.published_at), source=it.source))
        given.append({"label": it.label, "score": it.score, "topic": it.topic} if it.label else None)
    return _ingest(session, state, principal.tenant_id, raw, given, classifier, background)


@router.get("/items", summary="Recent items, newest first")
def list_items(principal: PredictPrincipal, session: SessionDep,
               limit: Annotated[int, Query(ge=1, le=500)] = 50) -> ListPublic:
    return ListPublic.of([_item(i) for i in ItemRepo(session, principal.tenant_id).recent(limit)])


@router.get("/entities", summary="Entities mentioned, most mentioned first")
def list_entities(principal: PredictPrincipal, session: SessionDep) -> ListPublic:
    return ListPublic.of([{"entity": e, "mentions": n} for e, n in ItemRepo(session, principal.tenant_id).entities()])


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    return parse_time(start), parse_time(end)


@router.get("/series", summary="Sentiment time series of an entity, a topic, or of all items")
def get_series(principal: PredictPrincipal, session: SessionDep, entity: str | None = None,
               topic: str | None = None, bucket: Literal["15min", "hour", "day"] = "hour",
               start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
    s, e = _range(start, end)
    data = series(session, principal.tenant_id, entity=entity, topic=topic, bucket=bucket, start=s, end=e)
    return {"object": "monitor.series", "entity": entity, "topic": topic, "bucket": bucket, "data": data}


@router.get("/chart.png", summary="PNG chart of an entity's sentiment over time",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def get_chart(principal: PredictPrincipal, session: SessionDep, entity: str | None = None,
              topic: str | None = None, bucket: Literal["15min", "hour", "day"] = "hour",
              start: datetime | None = None, end: datetime | None = None) -> Response:
    from tuneforge.solutions.monitor.charts import series_png

    s, e = _range(start, end)
    data = series(session, principal.tenant_id, entity=entity, topic=topic, bucket=bucket, start=s, end=e)
    if not data:
        raise InvalidRequestError("no items in this range for this entity/topic; nothing to draw", param="entity",
                                  code="no_data")
    title = f"{entity or topic or 'all items'}: sentiment per {bucket}"
    return Response(series_png(data, title=title), media_type="image/png")


# --------------------------------------------------------------------------------------------- watch-list
@router.get("/watchlist", summary="The watch-list")
def list_watch(principal: PredictPrincipal, session: SessionDep) -> ListPublic:
    return ListPublic.of([_watch(w) for w in WatchRepo(session, principal.tenant_id).all()])


@router.post("/watchlist", summary="Add (or replace the aliases of) a watch-list entry")
def add_watch(body: WatchCreate, principal: TrainPrincipal, session: SessionDep) -> dict[str, Any]:
    repo = WatchRepo(session, principal.tenant_id)
    w = repo.by_name(body.name.strip())
    aliases = [a.strip() for a in body.aliases if a.strip()]
    if w is None:
        w = repo.add(MonitorWatch(id=new_id("mwatch"), name=body.name.strip(), aliases=aliases))
    else:
        w.aliases = aliases
    session.commit()
    return _watch(w)


@router.delete("/watchlist/{watch_id}", summary="Remove a watch-list entry")
def remove_watch(watch_id: str, principal: TrainPrincipal, session: SessionDep) -> dict[str, Any]:
    repo = WatchRepo(session, principal.tenant_id)
    repo.delete(repo.get(watch_id))
    session.commit()
    return {"id": watch_id, "object": "monitor.watch", "deleted": True}


# ------------------------------------------------------------------------------------------------- rules
@router.get("/rules", summary="Alert rules")
def list_rules(principal: PredictPrincipal, session: SessionDep) -> ListPublic:
    return ListPublic.of([_rule(r) for r in RuleRepo(session, principal.tenant_id).list(limit=1000).data])


@router.post("/rules", summary="Create an alert rule")
def create_rule(body: RuleCreate, principal: TrainPrincipal, session: SessionDep, settings: SettingsDep
                ) -> dict[str, Any]:
    if body.webhook_url and not settings.allow_private_urls:
        check_public_url(body.webhook_url, param="webhook_url")
    try:
        RuleParams(metric=body.metric, window_minutes=body.window_minutes, baseline_minutes=body.baseline_minutes,
                   threshold=body.threshold, min_items=body.min_items, min_increase=body.min_increase,
                   cooldown_minutes=body.cooldown_minutes)
    except TuneforgeError as e:
        raise InvalidRequestError(str(e), param="rule") from None
    r = RuleRepo(session, principal.tenant_id).add(MonitorRule(id=new_id("mrule"), **body.model_dump()))
    session.commit()
    return _rule(r)


@router.get("/rules/{rule_id}", summary="One alert rule")
def get_rule(rule_id: str, principal: PredictPrincipal, session: SessionDep) -> dict[str, Any]:
    return _rule(RuleRepo(session, principal.tenant_id).get(rule_id))


@router.patch("/rules/{rule_id}", summary="Change an alert rule")
def update_rule(rule_id: str, body: RuleUpdate, principal: TrainPrincipal, session: SessionDep,
                settings: SettingsDep) -> dict[str, Any]:
    r = RuleRepo(session, principal.tenant_id).get(rule_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("webhook_url") and not str(changes["webhook_url"]).startswith(("http://", "https://")):
        raise InvalidRequestError("webhook_url must be an http:// or https:// URL", param="webhook_url")
    if changes.get("webhook_url") and not settings.allow_private_urls:
        check_public_url(str(changes["webhook_url"]), param="webhook_url")
    for k, v in changes.items():
        setattr(r, k, v)
    session.commit()
    return _rule(r)


@router.delete("/rules/{rule_id}", summary="Delete an alert rule (and its alerts)")
def delete_rule(rule_id: str, principal: TrainPrincipal, session: SessionDep) -> dict[str, Any]:
    repo = RuleRepo(session, principal.tenant_id)
    repo.delete(repo.get(rule_id))
    session.commit()
    return {"id": rule_id, "object": "monitor.rule", "deleted": True}


# ------------------------------------------------------------------------------------------------ alerts
@router.get("/alerts", summary="Fired alerts, newest first, with the items that triggered them")
def list_alerts(principal: PredictPrincipal, session: SessionDep,
                limit: Annotated[int, Query(ge=1, le=200)] = 20, after: str | None = None) -> ListPublic:
    page = AlertRepo(session, principal.tenant_id).list(after=after, limit=limit)
    return ListPublic.of([alert_payload(session, principal.tenant_id, a) for a in page.data], page.has_more)


@router.get("/alerts/{alert_id}", summary="One alert")
def get_alert(alert_id: str, principal: PredictPrincipal, session: SessionDep) -> dict[str, Any]:
    return alert_payload(session, principal.tenant_id, AlertRepo(session, principal.tenant_id).get(alert_id))


# ----------------------------------------------------------------------------------------------- sources
@router.get("/sources", summary="Polled feeds and pages")
def list_sources(principal: PredictPrincipal, session: SessionDep) -> ListPublic:
    return ListPublic.of([_source(s) for s in SourceRepo(session, principal.tenant_id).all()])


@router.post("/sources", summary="Add a feed or page to poll")
def add_source(body: SourceCreate, principal: TrainPrincipal, session: SessionDep, settings: SettingsDep
               ) -> dict[str, Any]:
    if not settings.allow_private_urls:
        check_public_url(body.url)
    s = SourceRepo(session, principal.tenant_id).add(MonitorSource(id=new_id("msrc"), **body.model_dump()))
    session.commit()
    return _source(s)


@router.delete("/sources/{source_id}", summary="Stop polling a source")
def delete_source(source_id: str, principal: TrainPrincipal, session: SessionDep) -> dict[str, Any]:
    repo = SourceRepo(session, principal.tenant_id)
    repo.delete(repo.get(source_id))
    session.commit()
    return {"id": source_id, "object": "monitor.source", "deleted": True}


@router.post("/sources/{source_id}/poll", summary="Fetch a source now and ingest what is new")
def poll_source(source_id: str, principal: TrainPrincipal, session: SessionDep, state: StateDep, models: Models,
                background: BackgroundTasks, model: str | None = None, model_zh: str | None = None
                ) -> dict[str, Any]:
    src = SourceRepo(session, principal.tenant_id).get(source_id)
    st = source_state(src)
    classifier = _classifier(state, models, model, model_zh)
    if classifier is None:  # checked before fetching: a 304 later would not bring these items back
        raise InvalidRequestError("model: polled items carry no sentiment; pass model (and model_zh) as query "
                                  "parameters naming your fine-tuned classification models.", param="model",
                                  code="model_required")
    session.rollback()
    poller = Poller(public_only=not state.settings.allow_private_urls)
    try:
        result = poller.fetch(st)
    finally:
        poller.close()
    src = SourceRepo(session, principal.tenant_id).get(source_id)
    src.etag, src.last_modified, src.last_polled_at = st.etag, st.last_modified, st.last_polled_at
    src.last_status = (result.status + (f": {result.detail}" if result.detail else ""))[:200]
    session.commit()
    out: dict[str, Any] = {"object": "monitor.poll", "status": result.status, "detail": result.detail}
    if result.items:
        out.update(_ingest(session, state, principal.tenant_id, result.items, [None] * len(result.items),
                           classifier, background))
    return out


__all__ = ["METRICS", "router"]
