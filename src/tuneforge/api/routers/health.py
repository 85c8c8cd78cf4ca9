"""/healthz, /readyz and /metrics (no authentication: keep them on an internal network in production).

``/healthz`` says the process is alive (and whether the database answers); ``/readyz`` says it can serve: the
database answers and its schema is at the migrations this version ships (a load balancer sends traffic only
then).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from tuneforge.api.deps import StateDep
from tuneforge.api.docs import error_responses

router = APIRouter(tags=["operations"])


def _database(state: StateDep) -> str:
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as e:  # noqa: BLE001
        return f"error: {type(e).__name__}"
    return "ok"


def head_revision() -> str | None:
    """The newest migration shipped with this version."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from tuneforge.store.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


@router.get("/healthz", summary="Liveness and database check", responses=error_responses(503))
def healthz(state: StateDep) -> JSONResponse:
    db = _database(state)
    ok = db == "ok"
    return JSONResponse({"status": "ok" if ok else "degraded", "database": db,
                         "loaded_models": state.inference.cache.keys()}, status_code=200 if ok else 503)


@router.get("/readyz", summary="Readiness: database reachable and migrations current", responses=error_responses(503))
def readyz(state: StateDep) -> JSONResponse:
    from tuneforge.store.db import current_revision

    db = _database(state)
    head = head_revision()
    current = None
    if db == "ok":
        try:
            current = current_revision(state.engine)
        except Exception as e:  # noqa: BLE001
            db = f"error: {type(e).__name__}"
    migrations = "current" if current == head else ("unknown" if db != "ok" else "behind")
    ready = db == "ok" and migrations == "current"
    return JSONResponse({"status": "ready" if ready else "not_ready", "database": db, "migrations": migrations,
                         "revision": current, "head": head}, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    state.metrics.loaded_model_bytes.set(state.inference.cache.used_bytes)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
