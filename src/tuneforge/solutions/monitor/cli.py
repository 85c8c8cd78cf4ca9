"""``tuneforge solution monitor ...``: thin commands over :mod:`tuneforge.solutions.monitor`.

Commands that keep state (ingest, watchlist, rules, sources, watch, chart, alerts) work on the service's
database (``TUNEFORGE_DATABASE_URL`` / ``TUNEFORGE_DATA_DIR``, as ``tuneforge serve`` and ``tuneforge admin``)
for one ``--tenant``; ``classify`` and ``replay`` need no database. Sentiment models are TuneForge run folders
(``tuneforge train --output DIR``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tuneforge.errors import ConfigError

app = typer.Typer(no_args_is_help=True,
                  help="The financial-news sentiment monitor: ingest, classify, alert rules, charts.")
watchlist_app = typer.Typer(no_args_is_help=True, help="The entities (tickers, companies) to follow.")
rules_app = typer.Typer(no_args_is_help=True, help="Alert rules: when and where to alert.")
sources_app = typer.Typer(no_args_is_help=True, help="RSS/Atom feeds and web pages polled by `watch`.")
app.add_typer(watchlist_app, name="watchlist")
app.add_typer(rules_app, name="rules")
app.add_typer(sources_app, name="sources")

out = Console()
err = Console(stderr=True)

TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant name or id (see `tuneforge admin list-tenants`).")]
ModelOpt = Annotated[Path | None, typer.Option("--model", "-m", help="Sentiment model (run folder) for English, "
                                                                      "and for Chinese without --model-zh.")]
ModelZhOpt = Annotated[Path | None, typer.Option("--model-zh", help="Sentiment model (run folder) for Chinese.")]
TopicOpt = Annotated[Path | None, typer.Option("--topic-model", help="Topic classifier (run folder) instead of the "
                                                                     "keyword rules.")]
NerOpt = Annotated[Path | None, typer.Option("--ner", help="NER model (run folder): its ORG entities are added "
                                                           "to the watch-list's.")]


@contextmanager
def _session(tenant: str) -> Iterator[tuple[Any, str]]:
    from pydantic import ValidationError

    from tuneforge.settings import Settings
    from tuneforge.store.db import make_engine, make_session_factory, upgrade
    from tuneforge.store.tenants import ensure_plans, get_tenant

    try:
        settings = Settings()
    except ValidationError as e:
        raise ConfigError([str(x["msg"]) for x in e.errors()], hint="Fix the TUNEFORGE_* environment.") from None
    engine = make_engine(settings.db_url, pool_size=1, max_overflow=2)
    try:
        upgrade(engine)
        with make_session_factory(engine)() as s:
            ensure_plans(s)
            tenant_id = get_tenant(s, tenant).id
            s.commit()
            yield s, tenant_id
    finally:
        engine.dispose()


def _classifier(model: Path | None, model_zh: Path | None, topic: Path | None = None) -> Any:
    from tuneforge.solutions.monitor.classify import SentimentClassifier

    if model is None and model_zh is None:
        return None
    with err.status("Loading the sentiment model..."):
        return SentimentClassifier.from_run_dirs(str(model) if model else None, str(model_zh) if model_zh else None,
                                                 topic=str(topic) if topic else None)


def _ner(path: Path | None) -> Any:
    if path is None:
        return None
    from tuneforge.inference import load_predictor

    p = load_predictor(path)
    if not (p.task.per_token and p.task.labelled):  # entity types tagged per token
        raise ConfigError(f"--ner: {path} is a {p.task.name} model, not a NER model")
    return lambda texts: list(p.predict(texts))


def _report_ingest(report: Any, session: Any, tenant_id: str, *, notify: bool) -> None:
    from tuneforge.solutions.monitor.service import AlertRepo, deliver, smtp_from_env

    dup = ", ".join(f"{k} {v}" for k, v in sorted(report.duplicates.items())) or "none"
    out.print(f"received {report.received}, stored {report.stored}, duplicates: {dup}; "
              f"alerts fired: {len(report.alert_ids)}")
    smtp = smtp_from_env()
    for alert_id in report.alert_ids:
        a = AlertRepo(session, tenant_id).get(alert_id)
        out.print(f"[red]ALERT[/] {a.entity} {a.metric} {a.value:.2f} (expected {a.expected:.2f}, z {a.z:.1f}) at "
                  f"{a.at:%Y-%m-%d %H:%M} — {len(a.item_ids)} item(s) [dim]{a.id}[/]")
        if notify:
            for d in deliver(session, tenant_id, alert_id, smtp=smtp):
                out.print(f"  {d.channel} {d.target}: {'ok' if d.ok else 'FAILED'} {d.detail}")


@app.command()
def ingest(
    tenant: TenantOpt,
    file: Annotated[Path | None, typer.Argument(help="A .jsonl or .csv of items (text, title, url, guid, "
                                                     "published_at, source; label to skip the model).")] = None,
    feed: Annotated[str | None, typer.Option(help="Fetch this RSS/Atom feed once (robots.txt honoured).")] = None,
    page: Annotated[str | None, typer.Option(help="Fetch this web page once as one item.")] = None,
    model: ModelOpt = None,
    model_zh: ModelZhOpt = None,
    topic_model: TopicOpt = None,
    ner: NerOpt = None,
    notify: Annotated[bool, typer.Option(help="Deliver fired alerts (webhook, e-mail).")] = True,
) -> None:
    """Classify and store items from a file, a feed or a page, and run the alert rules on them."""
    from tuneforge.solutions.monitor.ingest import Poller, SourceState, read_items
    from tuneforge.solutions.monitor.service import ingest_items, matcher_for

    if sum(x is not None for x in (file, feed, page)) != 1:
        raise ConfigError("give exactly one of FILE, --feed URL or --page URL")
    if file is None and model is None and model_zh is None:
        raise ConfigError("--model: fetched items carry no sentiment; give a sentiment model (a run folder)")
    given: list[dict[str, Any] | None] | None = None
    if file is not None:
        items = read_items(file)
        given = _labels_in(file, len(items))
    else:
        poller = Poller()
        try:
            res = poller.fetch(SourceState(url=str(feed or page), kind="feed" if feed else "page"))
        finally:
            poller.close()
        if res.status != "ok":
            raise ConfigError(f"{feed or page}: {res.status} {res.detail}".strip())
        items = res.items
    classifier, ner_fn = _classifier(model, model_zh, topic_model), _ner(ner)
    with _session(tenant) as (s, tenant_id):
        with err.status(f"Classifying {len(items)} item(s)..."):
            report = ingest_items(s, tenant_id, items, classify=classifier, given=given,
                                  matcher=matcher_for(s, tenant_id, ner=ner_fn))
        _report_ingest(report, s, tenant_id, notify=notify)


def _labelled_rows(path: Path) -> list[dict[str, Any]]:
    from tuneforge.errors import DataError, DataProblem

    if not path.is_file():
        raise DataError([DataProblem(str(path), None, None, "no such file")])
    rows, problems = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(DataProblem(str(path), n, None, f"not JSON: {e.msg}"))
            continue
        if not isinstance(r, dict) or not r.get("text") or not r.get("label"):
            problems.append(DataProblem(str(path), n, "text/label", "needs a text and a label"))
            continue
        rows.append(r)
    if problems:
        raise DataError(problems)
    return rows


def _labels_in(file: Path, n: int) -> list[dict[str, Any] | None] | None:
    """Labels given in a JSONL file (``label``, ``score``, ``topic``), aligned with read_items' rows."""
    if file.suffix.lower() not in (".jsonl", ".ndjson"):
        return None
    rows = [json.loads(x) for x in file.read_text(encoding="utf-8").split("\n") if x.strip()]
    if len(rows) != n or not any(isinstance(r, dict) and r.get("label") for r in rows):
        return None
    return [{"label": r["label"], "score": r.get("score"), "topic": r.get("topic")} if r.get("label") else None
            for r in rows]


@app.command()
def classify(
    inputs: Annotated[list[str], typer.Argument(help="Texts, or one .jsonl/.csv file of items.")],
    model: ModelOpt = None,
    model_zh: ModelZhOpt = None,
    topic_model: TopicOpt = None,
    ner: NerOpt = None,
    watch: Annotated[list[str] | None, typer.Option(help="Watch-list entry NAME[:ALIAS,ALIAS...]; "
                                                         "repeatable (cashtags are always found).")] = None,
) -> None:
    """Classify texts: sentiment, language, topic and entities (nothing is stored)."""
    from tuneforge.solutions.monitor.entities import EntityMatcher, WatchEntry
    from tuneforge.solutions.monitor.ingest import read_items

    if len(inputs) == 1 and Path(inputs[0]).suffix.lower() in (".jsonl", ".csv", ".tsv", ".ndjson"):
        texts = [i.full_text for i in read_items(inputs[0])]
    else:
        texts = list(inputs)
    clf = _classifier(model, model_zh, topic_model)
    if clf is None:
        raise ConfigError("--model: give a sentiment model (a TuneForge classification run folder)")
    entries = []
    for w in watch or []:
        name, _, aliases = w.partition(":")
        entries.append(WatchEntry(name.strip(), [a.strip() for a in aliases.split(",") if a.strip()]))
    matcher = EntityMatcher(entries, ner=_ner(ner))
    results = clf(texts)
    t = Table()
    for col in ("text", "sentiment", "score", "lang", "topic", "entities"):
        t.add_column(col)
    for text, r, ents in zip(texts, results, matcher(texts), strict=True):
        t.add_row(text[:80], f"{r.label} ({r.polarity})", f"{r.score:+.2f}", r.lang, r.topic or "-",
                  ", ".join(ents) or "-")
    out.print(t)


# --------------------------------------------------------------------------------------------- watch-list
@watchlist_app.command("add")
def watchlist_add(tenant: TenantOpt,
                  name: Annotated[str, typer.Argument(help="Canonical name, e.g. AAPL or 贵州茅台.")],
                  alias: Annotated[list[str] | None, typer.Option("--alias", "-a", help="Repeatable.")] = None
                  ) -> None:
    """Add an entity (or replace its aliases)."""
    from tuneforge.solutions.monitor.service import WatchRepo
    from tuneforge.store.ids import new_id
    from tuneforge.store.solution_tables.monitor import MonitorWatch

    with _session(tenant) as (s, tenant_id):
        repo = WatchRepo(s, tenant_id)
        w = repo.by_name(name)
        if w is None:
            repo.add(MonitorWatch(id=new_id("mwatch"), name=name, aliases=list(alias or [])))
        else:
            w.aliases = list(alias or [])
        s.commit()
    out.print(f"watching {name}" + (f" (aliases: {', '.join(alias)})" if alias else ""))


@watchlist_app.command("list")
def watchlist_list(tenant: TenantOpt) -> None:
    from tuneforge.solutions.monitor.service import WatchRepo

    with _session(tenant) as (s, tenant_id):
        t = Table("name", "aliases", "id")
        for w in WatchRepo(s, tenant_id).all():
            t.add_row(w.name, ", ".join(w.aliases or []), w.id)
    out.print(t)


# ------------------------------------------------------------------------------------------------- rules
@rules_app.command("add")
def rules_add(
    tenant: TenantOpt,
    entity: Annotated[str, typer.Option(help="An entity, or * for each entity.")] = "*",
    metric: Annotated[str, typer.Option(help="negative_share, volume or negative_volume.")] = "negative_share",
    window: Annotated[int, typer.Option(help="Current window, minutes.")] = 360,
    baseline: Annotated[int, typer.Option(help="Trailing baseline before the window, minutes.")] = 7 * 24 * 60,
    threshold: Annotated[float, typer.Option(help="z-score to alert at.")] = 3.0,
    min_items: Annotated[int, typer.Option(help="Items needed in the window.")] = 5,
    min_increase: Annotated[float, typer.Option(help="negative_share: least rise over the baseline share.")] = 0.2,
    cooldown: Annotated[int, typer.Option(help="Minutes of quiet after an alert (per entity).")] = 360,
    webhook: Annotated[str | None, typer.Option(help="POST alerts as JSON here.")] = None,
    secret: Annotated[str | None, typer.Option(help="Sign webhook bodies with HMAC-SHA256 and this secret.")] = None,
    email: Annotated[list[str] | None, typer.Option(help="E-mail alerts here (repeatable; needs "
                                                         "TUNEFORGE_MONITOR_SMTP_HOST).")] = None,
    name: Annotated[str, typer.Option(help="A name shown in alerts.")] = "",
) -> None:
    """Create an alert rule."""
    from tuneforge.solutions.monitor.detect import RuleParams
    from tuneforge.solutions.monitor.service import RuleRepo
    from tuneforge.store.ids import new_id
    from tuneforge.store.solution_tables.monitor import MonitorRule

    RuleParams(metric=metric, window_minutes=window, baseline_minutes=baseline, threshold=threshold,
               min_items=min_items, min_increase=min_increase, cooldown_minutes=cooldown)
    if webhook and not webhook.startswith(("http://", "https://")):
        raise ConfigError("--webhook: an http:// or https:// URL")
    with _session(tenant) as (s, tenant_id):
        r = RuleRepo(s, tenant_id).add(MonitorRule(
            id=new_id("mrule"), name=name, entity=entity, metric=metric, window_minutes=window,
            baseline_minutes=baseline, threshold=threshold, min_items=min_items, min_increase=min_increase,
            cooldown_minutes=cooldown, webhook_url=webhook, webhook_secret=secret, emails=list(email or []),
            enabled=True))
        s.commit()
        out.print(f"rule {r.id}: {metric} of {entity} over {window} min against {baseline} min, z >= {threshold}")


@rules_app.command("list")
def rules_list(tenant: TenantOpt) -> None:
    from tuneforge.solutions.monitor.service import RuleRepo

    with _session(tenant) as (s, tenant_id):
        t = Table("id", "name", "entity", "metric", "window", "baseline", "z", "min items", "channels")
        for r in RuleRepo(s, tenant_id).list(limit=1000).data:
            channels = ", ".join(([r.webhook_url] if r.webhook_url else []) + list(r.emails or [])) or "-"
            t.add_row(r.id, r.name, r.entity, r.metric, str(r.window_minutes), str(r.baseline_minutes),
                      f"{r.threshold:g}", str(r.min_items), channels)
    out.print(t)


@rules_app.command("delete")
def rules_delete(tenant: TenantOpt, rule_id: Annotated[str, typer.Argument()]) -> None:
    from tuneforge.solutions.monitor.service import RuleRepo

    with _session(tenant) as (s, tenant_id):
        repo = RuleRepo(s, tenant_id)
        repo.delete(repo.get(rule_id))
        s.commit()
    out.print(f"deleted {rule_id}")


# ----------------------------------------------------------------------------------------------- sources
@sources_app.command("add")
def sources_add(tenant: TenantOpt, url: Annotated[str, typer.Argument()],
                kind: Annotated[str, typer.Option(help="feed (RSS/Atom) or page.")] = "feed",
                interval: Annotated[int, typer.Option(help="Seconds between polls (at least 60).")] = 900,
                name: Annotated[str, typer.Option()] = "") -> None:
    """Add a feed or page for `watch` to poll."""
    from tuneforge.solutions.monitor.service import SourceRepo
    from tuneforge.store.ids import new_id
    from tuneforge.store.solution_tables.monitor import MonitorSource

    problems = []
    if kind not in ("feed", "page"):
        problems.append(f"--kind: '{kind}' is not feed or page")
    if interval < 60:
        problems.append(f"--interval: {interval} s is too often; at least 60")
    if not url.startswith(("http://", "https://")):
        problems.append("URL: an http:// or https:// URL")
    if problems:
        raise ConfigError(problems)
    with _session(tenant) as (s, tenant_id):
        src = SourceRepo(s, tenant_id).add(MonitorSource(id=new_id("msrc"), url=url, kind=kind, interval_s=interval,
                                                         name=name))
        s.commit()
        out.print(f"source {src.id}: {kind} {url} every {interval} s")


@sources_app.command("list")
def sources_list(tenant: TenantOpt) -> None:
    from tuneforge.solutions.monitor.service import SourceRepo

    with _session(tenant) as (s, tenant_id):
        t = Table("id", "kind", "url", "every", "last polled", "status")
        for src in SourceRepo(s, tenant_id).all():
            t.add_row(src.id, src.kind, src.url, f"{src.interval_s} s",
                      f"{src.last_polled_at:%Y-%m-%d %H:%M}" if src.last_polled_at else "-", src.last_status or "-")
    out.print(t)


@app.command()
def watch(tenant: TenantOpt, model: ModelOpt = None, model_zh: ModelZhOpt = None, topic_model: TopicOpt = None,
          ner: NerOpt = None,
          tick: Annotated[float, typer.Option(help="Seconds between checks for due sources.")] = 30.0,
          once: Annotated[bool, typer.Option(help="Poll the due sources once and exit.")] = False) -> None:
    """Poll the tenant's sources on their intervals, classify new items and alert (Ctrl-C stops)."""
    from tuneforge.solutions.monitor.ingest import Poller
    from tuneforge.solutions.monitor.service import SourceRepo, ingest_items, matcher_for, source_state

    classifier, ner_fn = _classifier(model, model_zh, topic_model), _ner(ner)
    if classifier is None:
        raise ConfigError("--model: give a sentiment model (a TuneForge classification run folder)")
    poller = Poller()
    try:
        with _session(tenant) as (s, tenant_id):
            while True:
                rows = SourceRepo(s, tenant_id).all()
                states = {r.id: source_state(r) for r in rows}
                s.rollback()
                for res in poller.poll_due(list(states.values())):
                    src = SourceRepo(s, tenant_id).get(res.source.id)
                    src.etag, src.last_modified = res.source.etag, res.source.last_modified
                    src.last_polled_at = res.source.last_polled_at
                    src.last_status = (res.status + (f": {res.detail}" if res.detail else ""))[:200]
                    s.commit()
                    out.print(f"{res.source.url}: {res.status} {res.detail} ({len(res.items)} item(s))")
                    if res.items:
                        report = ingest_items(s, tenant_id, res.items, classify=classifier,
                                              matcher=matcher_for(s, tenant_id, ner=ner_fn))
                        _report_ingest(report, s, tenant_id, notify=True)
                if once:
                    return
                time.sleep(tick)
    finally:
        poller.close()


@app.command()
def chart(tenant: TenantOpt,
          entity: Annotated[str | None, typer.Argument(help="Entity (default: all items).")] = None,
          output: Annotated[Path | None, typer.Option("--output", "-o", help="Write a PNG here.")] = None,
          bucket: Annotated[str, typer.Option(help="15min, hour or day.")] = "hour",
          days: Annotated[float, typer.Option(help="Days back from the newest item.")] = 7.0,
          topic: Annotated[str | None, typer.Option()] = None) -> None:
    """Sentiment over time of an entity: a table in the console, or a PNG with --output."""
    from sqlalchemy import func

    from tuneforge.solutions.monitor.charts import series_png, series_text
    from tuneforge.solutions.monitor.service import AlertRepo, ItemRepo, series
    from tuneforge.store.solution_tables.monitor import MonitorItem
    from tuneforge.utils.fs import atomic_write_bytes

    with _session(tenant) as (s, tenant_id):
        newest = s.scalar(ItemRepo(s, tenant_id).select(func.max(MonitorItem.published_at)))
        if newest is None:
            raise ConfigError(f"tenant {tenant} has no items yet; ingest some first")
        start = newest - timedelta(days=days)
        data = series(s, tenant_id, entity=entity, topic=topic, bucket=bucket, start=start,
                      end=newest + timedelta(seconds=1))
        alerts = [a.at for a in AlertRepo(s, tenant_id).list(limit=1000).data
                  if (entity is None or a.entity == entity) and a.at >= start]
    if not data:
        raise ConfigError(f"no items of {entity or 'any entity'} in the last {days:g} days of the stream")
    if output:
        atomic_write_bytes(output, series_png(data, title=f"{entity or 'all items'}: sentiment per {bucket}",
                                              alerts=alerts))
        out.print(f"wrote {output}")
        return
    t = Table("bucket", "items", "negative", "mean score (- … +)", title=f"{entity or 'all items'} per {bucket}")
    for row in series_text(data):
        t.add_row(*row)
    out.print(t)


@app.command()
def alerts(tenant: TenantOpt, limit: Annotated[int, typer.Option()] = 20) -> None:
    """Recent alerts with the items that triggered them."""
    from tuneforge.solutions.monitor.service import AlertRepo, alert_payload

    with _session(tenant) as (s, tenant_id):
        for a in AlertRepo(s, tenant_id).list(limit=limit).data:
            p = alert_payload(s, tenant_id, a)
            out.print(f"[bold]{p['entity']}[/] {p['metric']} {p['value']:.2f} (expected {p['expected']:.2f}, "
                      f"z {p['z']:.1f}) at {p['at'][:16]} [dim]{p['id']}[/]")
            for it in p["items"][:5]:
                out.print(f"   [{it['label']}] {it['text'][:100]}")


@app.command()
def replay(
    data: Annotated[Path, typer.Argument(help="Labelled items (.jsonl: text, label), e.g. a validation set.")],
    model: ModelOpt = None,
    negative: Annotated[str, typer.Option(help="The label of negative items.")] = "bearish",
    days: Annotated[int, typer.Option()] = 30,
    bursts: Annotated[int, typer.Option()] = 12,
    burst_size: Annotated[int, typer.Option()] = 8,
    burst_minutes: Annotated[int, typer.Option()] = 120,
    metric: Annotated[str, typer.Option()] = "negative_share",
    window: Annotated[int, typer.Option()] = 240,
    threshold: Annotated[float, typer.Option()] = 3.0,
    min_items: Annotated[int, typer.Option()] = 4,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Replay labelled items as a stream with injected negative bursts; score the alerts (no database)."""
    from tuneforge.solutions.monitor.detect import RuleParams
    from tuneforge.solutions.monitor.replay import build_stream, detect, score_alerts

    rows = _labelled_rows(data)
    gold = [str(r["label"]) for r in rows]
    labels = gold
    if model is not None:
        from tuneforge.inference import load_predictor

        p = load_predictor(model)
        with err.status(f"Classifying {len(rows)} items..."):
            labels = [x["label"] for x in p.predict([r["text"] for r in rows])]
    rule = RuleParams(metric=metric, window_minutes=window, threshold=threshold, min_items=min_items)
    stream = build_stream(gold, negative=negative, days=days, bursts=bursts, burst_size=burst_size,
                          burst_minutes=burst_minutes, seed=seed)
    res = score_alerts(stream, detect(stream, labels, rule, negative=negative), rule)
    if as_json:
        out.print_json(json.dumps({"labels": "model" if model else "gold", **res}))
        return
    t = Table("labels", *res.keys())
    t.add_row("model" if model else "gold", *[f"{v:.3g}" if isinstance(v, float) else str(v) for v in res.values()])
    out.print(t)
