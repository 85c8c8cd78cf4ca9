"""``tuneforge serve``, ``tuneforge worker`` and ``tuneforge admin ...``: the service's commands.

Registered by :mod:`tuneforge.cli` (``register``). Configuration comes from the environment (``TUNEFORGE_DATA_DIR``,
``TUNEFORGE_DATABASE_URL``, ... see ``docs/service.md``); options override it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.table import Table

from tuneforge.cli.options import err, offline, out

__all__ = ["register"]

admin_app = typer.Typer(no_args_is_help=True, help="Manage tenants, plans, quotas and API keys.")

PlanOpt = Annotated[str | None, typer.Option(help="Plan: trial, starter, pro (see `tuneforge admin list-plans`).")]
JobsOpt = Annotated[int | None, typer.Option(help="Override: fine-tuning jobs at once.")]
TokensOpt = Annotated[int | None, typer.Option(help="Override: trained tokens per month.")]
RpmOpt = Annotated[int | None, typer.Option(help="Override: API requests per minute.")]
StorageOpt = Annotated[int | None, typer.Option(help="Override: bytes of files and models kept.")]
TpmOpt = Annotated[int | None, typer.Option(help="Override: chat and completion tokens (prompt + reply) per "
                                                 "minute.")]


def _settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from tuneforge.errors import ConfigError
    from tuneforge.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        problems = [(f"TUNEFORGE_{'_'.join(str(x) for x in err['loc']).upper()}: " if err["loc"] else "")
                    + err["msg"].removeprefix("Value error, ") for err in e.errors()]
        raise ConfigError(problems, hint="Fix these environment variables (or .env entries).") from None


@contextmanager
def _session() -> Iterator[Any]:
    from tuneforge.store.db import make_engine, make_session_factory, upgrade
    from tuneforge.store.tenants import ensure_plans

    settings = _settings()
    engine = make_engine(settings.db_url, pool_size=1, max_overflow=2)
    try:
        upgrade(engine)
        with make_session_factory(engine)() as s:
            ensure_plans(s)
            yield s
    finally:
        engine.dispose()


def _quota_overrides(jobs: int | None, tokens: int | None, rpm: int | None,
                     storage: int | None, tpm: int | None = None) -> dict[str, int | None]:
    values: dict[str, int | None] = {"max_concurrent_jobs": jobs, "trained_tokens_per_month": tokens,
                                     "requests_per_minute": rpm, "storage_bytes": storage, "tokens_per_minute": tpm}
    return {k: v for k, v in values.items() if v is not None}


def _show_key(secret: str, key: Any, tenant: str) -> None:
    out.print(f"API key for [bold]{tenant}[/] (id {key.id}, scopes: {key.scopes}). It is shown only now; "
              "store it in a secret manager:")
    print(secret, flush=True)  # plain, unwrapped: copy-paste and scripts read this line


# ------------------------------------------------------------------------------------------------------ admin
@admin_app.command("create-tenant")
def create_tenant(
    name: Annotated[str, typer.Argument(help="Short lowercase name (it appears in model names).")],
    plan: PlanOpt = None,
    trial_days: Annotated[int | None, typer.Option(help="Length of the trial (default: the plan's).")] = None,
    max_concurrent_jobs: JobsOpt = None, trained_tokens_per_month: TokensOpt = None,
    requests_per_minute: RpmOpt = None, storage_bytes: StorageOpt = None, tokens_per_minute: TpmOpt = None,
) -> None:
    """Create a tenant and print its first API key (all scopes) once."""
    from tuneforge.store.tenants import create_tenant as create

    settings = _settings()
    with _session() as s:
        tenant, key, secret = create(s, name=name, plan=plan or settings.default_plan, trial_days=trial_days,
                                     overrides=_quota_overrides(max_concurrent_jobs, trained_tokens_per_month,
                                                                requests_per_minute, storage_bytes,
                                                                tokens_per_minute))
    _show_key(secret, key, tenant.name)
    ends = f", trial ends {tenant.trial_ends_at:%Y-%m-%d}" if tenant.trial_ends_at else ""
    err.print(f"Created tenant {tenant.name} ({tenant.id}) on plan {tenant.plan_name}{ends}.")


@admin_app.command("create-key")
def create_key(
    tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
    scope: Annotated[list[str], typer.Option("--scope", help="train, predict or admin (repeat for several).")],
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Create an API key with the given scopes and print it once."""
    from tuneforge.store.tenants import create_api_key

    scopes = [x.strip() for s in scope for x in s.replace("|", ",").split(",") if x.strip()]
    with _session() as s:
        key, secret = create_api_key(s, tenant=tenant, scopes=scopes, name=name)
    _show_key(secret, key, tenant)


@admin_app.command("list-tenants")
def list_tenants() -> None:
    """Tenants with their plan, trial end and effective quotas."""
    from tuneforge.store.tenants import list_tenants as tenants
    from tuneforge.store.tenants import quotas_for

    t = Table(title="Tenants")
    for col in ("name", "id", "plan", "trial ends", "jobs", "tokens/month", "requests/min", "tokens/min",
                "storage"):
        t.add_column(col)
    with _session() as s:
        for tenant, plan in tenants(s):
            q = quotas_for(tenant, plan)
            t.add_row(tenant.name, tenant.id, plan.name,
                      f"{tenant.trial_ends_at:%Y-%m-%d}" if tenant.trial_ends_at else "-",
                      str(q.max_concurrent_jobs), f"{q.trained_tokens_per_month:,}", f"{q.requests_per_minute:,}",
                      f"{q.tokens_per_minute:,}", f"{q.storage_bytes / 2**20:,.0f} MiB")
    out.print(t)


@admin_app.command("list-plans")
def list_plans() -> None:
    """The plans and their limits."""
    from sqlalchemy import select

    from tuneforge.store.models import Plan

    t = Table(title="Plans")
    for col in ("name", "title", "jobs", "tokens/month", "requests/min", "tokens/min", "storage", "trial days"):
        t.add_column(col)
    with _session() as s:
        for p in s.scalars(select(Plan).order_by(Plan.max_concurrent_jobs)):
            t.add_row(p.name, p.title, str(p.max_concurrent_jobs), f"{p.trained_tokens_per_month:,}",
                      f"{p.requests_per_minute:,}", f"{p.tokens_per_minute:,}", f"{p.storage_bytes / 2**20:,.0f} MiB",
                      str(p.trial_days) if p.trial_days is not None else "-")
    out.print(t)


@admin_app.command("list-keys")
def list_keys(tenant: Annotated[str, typer.Argument(help="Tenant name or id.")]) -> None:
    """A tenant's API keys (prefixes only: secrets are never stored)."""
    from tuneforge.store.tenants import list_keys as keys

    t = Table(title=f"API keys of {tenant}")
    for col in ("id", "prefix", "name", "scopes", "created", "revoked"):
        t.add_column(col)
    with _session() as s:
        for k in keys(s, tenant=tenant):
            t.add_row(k.id, k.prefix + "...", k.name, k.scopes, f"{k.created_at:%Y-%m-%d %H:%M}",
                      f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-")
    out.print(t)


@admin_app.command("revoke-key")
def revoke_key(key: Annotated[str, typer.Argument(help="Key id (key-...) or displayed prefix (tf_...).")]) -> None:
    """Revoke an API key at once."""
    from tuneforge.store.tenants import revoke_key as revoke

    with _session() as s:
        k = revoke(s, key=key)
    out.print(f"Revoked key {k.id} ({k.prefix}...).")


@admin_app.command("set-plan")
def set_plan(tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
             plan: Annotated[str, typer.Argument(help="trial, starter or pro.")],
             trial_days: Annotated[int | None, typer.Option(help="Trial length for a trial plan.")] = None) -> None:
    """Move a tenant to another plan (a paid plan ends the trial)."""
    from tuneforge.store.tenants import set_plan as move

    with _session() as s:
        t = move(s, tenant=tenant, plan=plan, trial_days=trial_days)
    ends = f"; trial ends {t.trial_ends_at:%Y-%m-%d}" if t.trial_ends_at else ""
    out.print(f"{t.name} is now on plan {t.plan_name}{ends}.")


@admin_app.command("set-quota")
def set_quota(
    tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
    max_concurrent_jobs: JobsOpt = None, trained_tokens_per_month: TokensOpt = None,
    requests_per_minute: RpmOpt = None, storage_bytes: StorageOpt = None, tokens_per_minute: TpmOpt = None,
    clear: Annotated[list[str] | None, typer.Option(help="Remove an override (back to the plan's limit).")] = None,
) -> None:
    """Override a tenant's quotas."""
    from tuneforge.store.tenants import set_quotas

    overrides: dict[str, int | None] = dict(_quota_overrides(max_concurrent_jobs, trained_tokens_per_month,
                                                             requests_per_minute, storage_bytes, tokens_per_minute))
    overrides.update({name.replace("-", "_"): None for name in clear or []})
    if not overrides:
        raise typer.BadParameter("give at least one quota option or --clear")
    with _session() as s:
        t = set_quotas(s, tenant=tenant, overrides=overrides)
    out.print(f"Updated the quotas of {t.name}.")


@admin_app.command("disable-tenant")
def disable_tenant(tenant: Annotated[str, typer.Argument(help="Tenant name or id.")]) -> None:
    """Refuse every request of a tenant (its data is kept; `enable-tenant` undoes it)."""
    from tuneforge.store.tenants import set_disabled

    with _session() as s:
        t = set_disabled(s, tenant=tenant, disabled=True)
    out.print(f"Disabled {t.name}: its API keys are refused until `tuneforge admin enable-tenant {t.name}`.")


@admin_app.command("enable-tenant")
def enable_tenant(tenant: Annotated[str, typer.Argument(help="Tenant name or id.")]) -> None:
    """Accept a disabled tenant's requests again."""
    from tuneforge.store.tenants import set_disabled

    with _session() as s:
        t = set_disabled(s, tenant=tenant, disabled=False)
    out.print(f"Enabled {t.name}.")


@admin_app.command("import-model")
def import_model(tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
                 run_folder: Annotated[str, typer.Argument(help="A finished `tuneforge train` --output folder.")],
                 name: Annotated[str, typer.Option(help="The model's name (callers use it as the model id).")]) -> None:
    """Register a run trained with the CLI as the tenant's model (bring your own run; see jobs/imports.py)."""
    from pathlib import Path

    from tuneforge.jobs.imports import import_run
    from tuneforge.store.storage import open_storage
    from tuneforge.store.tenants import get_tenant

    settings = _settings()
    with _session() as s:
        m = import_run(s, tenant=get_tenant(s, tenant), storage=open_storage(settings), settings=settings,
                       folder=Path(run_folder), name=name, source="cli", local_base=True)
    out.print(f"Imported {run_folder} as {m.id} (name {name}, {m.bytes:,} bytes).")
    print(m.id, flush=True)


# ----------------------------------------------------------------------------------------------- serve/worker
def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _serving_threads() -> None:
    """Let OpenMP threads sleep between forward passes instead of spinning (the default): spinning threads take
    the cores from the event loop and the request threads, which measured here as 0.5 s stalls on 2 cores.
    Training processes started by the embedded worker get the default back (see executors._child_main)."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.environ["TUNEFORGE_OMP_WAIT_POLICY_DEFAULTED"] = "1"


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int | None, typer.Option(
        help="Jobs trained at once by the worker inside the server (0: none; run `tuneforge worker`).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    backend: Annotated[str | None, typer.Option(
        help="What runs encoder models: torch (default), torch-bf16, onnx, onnx-int8, or auto (the fastest that "
             "agrees with torch, measured when a model loads); TUNEFORGE_MODEL_BACKENDS overrides it per model."
    )] = None,
) -> None:
    """Run the API (and, by default, a worker) with uvicorn. Docs at http://HOST:PORT/docs."""
    import uvicorn

    from tuneforge.api import create_app

    offline()
    _serving_threads()
    _logging(log_level)
    settings = _settings(embedded_workers=workers, backend=backend)
    err.print(f"TuneForge API on http://{host}:{port} (docs: /docs), database {_safe_url(settings.db_url)}, "
              f"{settings.embedded_workers} embedded worker slot(s), {settings.backend} backend.")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level.lower())


def worker(
    concurrency: Annotated[int | None, typer.Option(help="Jobs trained at once by this worker.")] = None,
    executor: Annotated[str | None, typer.Option(help="process (a child per job) or thread.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run a worker that trains queued jobs (on this machine or another sharing the database and data dir)."""
    from tuneforge.jobs.worker import Worker
    from tuneforge.store.db import make_engine, make_session_factory, upgrade
    from tuneforge.store.storage import open_storage
    from tuneforge.store.tenants import ensure_plans

    offline()
    _logging(log_level)
    settings = _settings(worker_concurrency=concurrency, executor=executor)
    engine = make_engine(settings.db_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions() as s:
        ensure_plans(s)
    w = Worker(sessions=sessions, settings=settings, storage=open_storage(settings),
               slots=settings.worker_concurrency)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    err.print(f"Worker {w.name}: {w.slots} slot(s), {settings.executor} executor, database "
              f"{_safe_url(settings.db_url)}. Ctrl-C hands running jobs back to the queue.")
    w.run(stop)
    engine.dispose()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``worker`` and ``admin`` to the ``tuneforge`` command."""
    app.command()(serve)
    app.command()(worker)
    app.add_typer(admin_app, name="admin")
