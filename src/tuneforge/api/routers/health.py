"""/healthz and /metrics (no authentication: keep them on an internal network in production)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from tuneforge.api.deps import StateDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness and database check")
def healthz(state: StateDep) -> JSONResponse:
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        db = "ok"
    except Exception as e:  # noqa: BLE001
        db = f"error: {type(e).__name__}"
    ok = db == "ok"
    return JSONResponse({"status": "ok" if ok else "degraded", "database": db,
                         "loaded_models": state.inference.cache.keys()}, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    state.metrics.loaded_model_bytes.set(state.inference.cache.used_bytes)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
