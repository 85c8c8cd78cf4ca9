"""The web console, served at ``/console`` by ``create_app`` (``TUNEFORGE_CONSOLE=false`` turns it off).

Server-rendered page shells (Jinja2) in the visitor's language, with small ES modules that talk to the public
API only: the browser keeps the API key in its session storage and sends it as ``Authorization: Bearer``, so the
server never sees tenant data outside the API. Charts come from Chart.js, vendored under ``static/vendor`` with
its licence; nothing is loaded from another origin (the pages' Content-Security-Policy says so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

import tuneforge
from tuneforge.console.i18n import LANGUAGES, catalog, pick_language

__all__ = ["PAGES", "install_console"]

HERE = Path(__file__).parent
#: page name -> (URL under /console, template, title key); the navigation shows those with a nav key
PAGES: dict[str, tuple[str, str, str]] = {
    "login": ("/login", "login.html", "login.title"),
    "datasets": ("/datasets", "datasets.html", "nav.datasets"),
    "dataset": ("/datasets/{file_id}", "dataset.html", "dataset.title"),
    "jobs": ("/jobs", "jobs.html", "nav.jobs"),
    "job_new": ("/jobs/new", "job_new.html", "nav.new_job"),
    "job": ("/jobs/{job_id}", "job.html", "job.title"),
    "models": ("/models", "models.html", "nav.models"),
    "model": ("/models/{model_id:path}", "model.html", "model.title"),
    "account": ("/account", "account.html", "nav.account"),
    "assistant": ("/solutions/assistant", "solution_assistant.html", "nav.assistant"),
    "monitor": ("/solutions/monitor", "solution_monitor.html", "nav.monitor"),
    "recommender": ("/solutions/recommender", "solution_recommender.html", "nav.recommender"),
    "registry": ("/registry", "registry.html", "nav.registry"),  # issue 23: the model registry
}
NAV = [("datasets", "nav.datasets"), ("job_new", "nav.new_job"), ("jobs", "nav.jobs"), ("models", "nav.models"),
       ("assistant", "nav.assistant"), ("monitor", "nav.monitor"), ("recommender", "nav.recommender"),
       ("account", "nav.account")]
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
LANG_COOKIE = "tf_lang"


def _page(templates: Jinja2Templates, name: str) -> Any:
    _, template, title_key = PAGES[name]

    def render(request: Request) -> Response:
        lang = pick_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE),
                             request.headers.get("accept-language"))
        messages = catalog(lang)
        params = {k: str(v) for k, v in request.path_params.items()}
        response = templates.TemplateResponse(request, template, {
            "page": name, "lang": lang, "languages": LANGUAGES, "t": lambda k: messages.get(k, k),
            "title": messages.get(title_key, title_key), "nav": NAV, "params": params,
            "params_json": json.dumps(params), "messages_json": json.dumps(messages, ensure_ascii=False),
            "version": tuneforge.__version__})
        response.headers["content-security-policy"] = CSP
        response.headers["x-content-type-options"] = "nosniff"
        response.headers["referrer-policy"] = "no-referrer"
        if request.query_params.get("lang") == lang:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/console")
        return response

    render.__name__ = f"console_{name}"
    return render


def install_console(app: FastAPI) -> None:
    """Serve the console's pages under ``/console`` and its assets under ``/console/static``."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    router = APIRouter(prefix="/console", include_in_schema=False)

    @router.get("", response_class=HTMLResponse)
    def home() -> RedirectResponse:
        return RedirectResponse("/console/datasets", status_code=307)

    # /jobs/new before /jobs/{job_id}
    for name in ("login", "datasets", "dataset", "jobs", "job_new", "job", "models", "model", "account",
                 "assistant", "monitor", "recommender", "registry"):
        router.add_api_route(PAGES[name][0], _page(templates, name), methods=["GET"], response_class=HTMLResponse,
                             name=f"console_{name}")
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=str(HERE / "static")), name="console_static")
