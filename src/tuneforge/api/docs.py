"""``/docs`` (Swagger UI) and ``/redoc`` served with their assets from an installed package, not a CDN: they work
on a server without internet access. The assets come from ``fastapi-offline``'s static folder."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "ERROR_STATUSES", "error_responses", "install_docs"]

#: where the Swagger UI and ReDoc assets are served
ASSETS_URL = "/docs-assets"


def install_docs(app: FastAPI, *, openapi_url: str, title: str) -> None:
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS_URL, StaticFiles(directory=str(assets)), name="docs_assets")
    redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{title} - API", oauth2_redirect_url=redirect,
                                   swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS_URL}/favicon.png")

    @app.get(redirect, include_in_schema=False)
    def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{title} - API reference",
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False)


#: what each error status means, for the OpenAPI spec (the body is always the error envelope)
ERROR_STATUSES: dict[int, str] = {
    400: "Invalid request: a bad value (the message names the field) or a state that does not allow it.",
    401: "No API key, or an unknown or revoked one.",
    403: "The API key lacks the scope this route needs.",
    404: "No such object for this tenant (another tenant's objects read exactly like missing ones).",
    409: "The object is in use, or a request with the same Idempotency-Key is still running.",
    413: "The request or upload is larger than the limit.",
    422: "The Idempotency-Key was used before with a different request.",
    429: "Rate limit or quota reached (see the x-ratelimit-* and retry-after headers).",
    503: "The service is not ready (database unreachable, or its schema not migrated).",
    507: "Storage failed or is full.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for routes that can answer ``statuses`` (all but 503 when none are given), each with the
    error envelope as its schema. It also replaces FastAPI's 422 validation body, which this API never sends
    (validation errors are 400s)."""
    from tuneforge.api.schemas import ErrorPublic

    chosen = statuses or tuple(s for s in ERROR_STATUSES if s != 503)
    return {s: {"model": ErrorPublic, "description": ERROR_STATUSES[s]} for s in chosen}
