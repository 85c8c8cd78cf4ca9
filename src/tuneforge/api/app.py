"""``create_app(settings)``: the FastAPI application of the service. Nothing is built at import time.

On start (the ASGI lifespan) the database schema is upgraded, the default plans are ensured, the usage meter's
flusher starts and, unless ``embedded_workers`` is 0, a worker runs in a background thread of the server
(training itself runs in child processes by default). On shutdown the worker hands its jobs back to the queue
(they resume from their checkpoints), usage is flushed and models are unloaded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import func, select

import tuneforge
from tuneforge.api.docs import error_responses, install_docs
from tuneforge.api.errors import install_error_handlers
from tuneforge.api.metrics import JobStats, Metrics
from tuneforge.api.middleware import BodyLimits, RequestContextMiddleware
from tuneforge.api.ratelimit import MemoryRateLimiter
from tuneforge.api.routers import (
    api_keys,
    assistant,
    chat,
    datasets,
    estimates,
    files,
    health,
    inference,
    jobs,
    models,
    monitor,
    recommender,
    usage,
)
from tuneforge.api.state import ServiceState
from tuneforge.inference.backends.routed import make_backend
from tuneforge.inference.generation_batcher import BatcherLimits
from tuneforge.inference.serving import InferenceService
from tuneforge.jobs.executors import make_executor
from tuneforge.settings import Settings
from tuneforge.store.db import make_engine, make_session_factory, upgrade
from tuneforge.store.models import Job
from tuneforge.store.storage import open_storage
from tuneforge.store.tenants import ensure_plans
from tuneforge.store.usage import UsageMeter

__all__ = ["create_app"]

log = logging.getLogger(__name__)

DESCRIPTION = """Fine-tune encoder models on your data and serve them, through an API compatible with OpenAI's
fine-tuning API (`base_url=http://HOST/v1` in the official clients). Authenticate with `Authorization: Bearer tf_...`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (read from the environment when omitted)."""
    settings = settings or Settings()
    # built now, so that an unknown TUNEFORGE_EXECUTOR is a ConfigError here and not a failed startup
    executor = make_executor(settings.executor) if settings.embedded_workers > 0 else None
    engine = make_engine(settings.db_url)
    sessions = make_session_factory(engine)

    def job_stats() -> JobStats:
        with sessions() as s:
            stats = JobStats(by_status=dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all()))
            stats.failures = {code or "unknown": n for code, n in s.execute(
                select(Job.error_code, func.count()).where(Job.status == "failed").group_by(Job.error_code))}
            for validated, started, finished, status in s.execute(
                    select(Job.validated_at, Job.started_at, Job.finished_at, Job.status)
                    .where(Job.started_at.is_not(None)).order_by(Job.created_at.desc()).limit(10_000)):
                if validated is not None and started is not None:
                    stats.queue_wait.append(max(0.0, (started - validated).total_seconds()))
                if status == "succeeded" and finished is not None and started is not None:
                    stats.training.append(max(0.0, (finished - started).total_seconds()))
            return stats

    metrics = Metrics(job_stats)
    state = ServiceState(
        settings=settings, engine=engine, sessions=sessions, storage=open_storage(settings),
        meter=UsageMeter(sessions, interval=settings.usage_flush_seconds),
        inference=InferenceService(capacity_bytes=settings.model_cache_bytes, max_items=settings.batch_max_items,
                                   max_wait_s=settings.batch_wait_ms / 1000, on_batch=metrics.on_batch,
                                   backend=make_backend(settings.backend, settings.model_backends),  # issue 20
                                   chat_limits=BatcherLimits(max_batch=settings.chat_max_batch,
                                                             max_queue=settings.chat_max_queue,
                                                             timeout_s=settings.chat_timeout_seconds)),
        metrics=metrics, ratelimiter=MemoryRateLimiter())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upgrade(engine)
        with sessions() as s:
            ensure_plans(s)
        state.meter.start()
        stop = threading.Event()
        thread = None
        if settings.embedded_workers > 0:
            from tuneforge.jobs.worker import Worker

            worker = Worker(sessions=sessions, settings=settings, storage=state.storage, executor=executor,
                            slots=settings.embedded_workers)
            thread = threading.Thread(target=worker.run, args=(stop,), name="tuneforge-worker", daemon=True)
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=60)
            state.meter.stop()
            state.inference.close()
            engine.dispose()

    app = FastAPI(title="TuneForge", version=tuneforge.__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json" if settings.api_docs else None)
    if settings.api_docs:
        install_docs(app, openapi_url="/openapi.json", title="TuneForge")
    app.state.tuneforge = state
    install_error_handlers(app)
    # Each router carries its whole prefix, so a route's path is the template that /metrics reports.
    # Every /v1 route documents the error statuses it can answer, with the error envelope (OpenAPI spec).
    for r in (files.router, datasets.router, jobs.router, estimates.router, models.router, inference.router,
              chat.router, usage.router, api_keys.router, assistant.router, monitor.router, recommender.router):
        app.include_router(r, responses=error_responses())
    from tuneforge.api.routers import drift as drift_routes  # issue 23: monitoring and drift
    app.include_router(drift_routes.router, responses=error_responses())
    from tuneforge.api.routers import registry as registry_routes  # issue 23: the model registry
    app.include_router(registry_routes.router, responses=error_responses())
    app.include_router(health.router)
    if settings.console:
        from tuneforge.console import install_console

        install_console(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics, meter=state.meter,
                       limits=BodyLimits(settings.max_request_bytes, settings.max_upload_bytes))
    return app
