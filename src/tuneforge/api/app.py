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
from tuneforge.api.errors import install_error_handlers
from tuneforge.api.metrics import Metrics
from tuneforge.api.middleware import RequestContextMiddleware
from tuneforge.api.ratelimit import MemoryRateLimiter
from tuneforge.api.routers import (
    api_keys,
    assistant,
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
from tuneforge.inference.serving import InferenceService
from tuneforge.settings import Settings
from tuneforge.store.db import make_engine, make_session_factory, upgrade
from tuneforge.store.models import Job
from tuneforge.store.storage import LocalStorage
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
    engine = make_engine(settings.db_url)
    sessions = make_session_factory(engine)

    def count_jobs() -> dict[str, int]:
        with sessions() as s:
            return {status: n for status, n in s.execute(select(Job.status, func.count()).group_by(Job.status))}

    metrics = Metrics(count_jobs=count_jobs)
    state = ServiceState(
        settings=settings, engine=engine, sessions=sessions, storage=LocalStorage(settings.artifacts_dir),
        meter=UsageMeter(sessions, interval=settings.usage_flush_seconds),
        inference=InferenceService(capacity_bytes=settings.model_cache_bytes, max_items=settings.batch_max_items,
                                   max_wait_s=settings.batch_wait_ms / 1000, on_batch=metrics.on_batch),
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

            worker = Worker(sessions=sessions, settings=settings, storage=state.storage,
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
                  docs_url="/docs" if settings.api_docs else None,
                  redoc_url="/redoc" if settings.api_docs else None,
                  openapi_url="/openapi.json" if settings.api_docs else None)
    app.state.tuneforge = state
    install_error_handlers(app)
    # Each router carries its whole prefix, so a route's path is the template that /metrics reports.
    for r in (files.router, datasets.router, jobs.router, estimates.router, models.router, inference.router,
              usage.router, api_keys.router, health.router, assistant.router, monitor.router, recommender.router):
        app.include_router(r)
    if settings.console:
        from tuneforge.console import install_console

        install_console(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics, meter=state.meter)
    return app
