"""Fixtures of the browser tests (tests/console, and the solutions' pages in tests/solutions): a real server on
a loopback port (temp data folder, SQLite, one embedded worker) and Debian's Chromium driven by Playwright.
Skipped, with the reason, where Chromium or the playwright package is missing; ``make test`` installs both.

Registered once for the whole run by ``pytest_plugins`` in tests/conftest.py: Playwright's sync API allows one
running instance, so every module must share this session's browser rather than import the fixtures itself.

Screenshots go to ``test-output/console/`` (``TUNEFORGE_TEST_OUTPUT`` overrides the folder).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.service_support import make_settings, new_tenant, serve

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("TUNEFORGE_CHROMIUM", "/usr/bin/chromium")
# Chromium as root, headless, with no calls home (the machine's network is closed; see docs/console.md)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def why_no_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver, or make test)"
    return None


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    why = why_no_browser()
    for item in items:
        uses_browser = {"browser", "page"} & set(getattr(item, "fixturenames", ()))
        if uses_browser:
            item.add_marker(pytest.mark.browser)
            if why:
                item.add_marker(pytest.mark.skip(reason=why))


def output_dir() -> Path:
    d = Path(os.environ.get("TUNEFORGE_TEST_OUTPUT", ROOT / "test-output")) / "console"
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class Server:
    url: str
    app: Any

    def tenant(self, **kw: Any) -> tuple[str, str]:
        return new_tenant(self.app.state.tuneforge.sessions, **kw)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Iterator[Server]:
    from tuneforge.api import create_app

    data = tmp_path_factory.mktemp("console-data")
    settings = make_settings(data, f"sqlite:///{data / 'tuneforge.db'}", embedded_workers=1,
                             base_models={"tiny-bert": tiny_bert}, heartbeat_seconds=0.5)
    app = create_app(settings)
    with serve(app) as url:
        yield Server(url, app)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Watch:
    """What a page did that a test should fail on: script errors, and requests leaving the server's origin."""

    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


@pytest.fixture
def watch(server: Server) -> Watch:
    return Watch(server.url)


def new_page(browser: Any, watch: Watch, *, viewport: dict[str, int] | None = None, scheme: str = "light",
             locale: str = "en-US") -> Any:
    ctx = browser.new_context(viewport=viewport or DESKTOP, color_scheme=scheme, locale=locale,
                              base_url=watch.origin)
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda e: watch.errors.append(f"{page.url}: {e}"))
    page.on("console", lambda m: watch.errors.append(f"{page.url}: {m.text}") if m.type == "error"
            and "401" not in m.text and "403" not in m.text and "409" not in m.text and "400" not in m.text
            else None)
    page.on("request", lambda r: None if r.url.startswith((watch.origin, "data:", "blob:"))
            else watch.foreign.append(r.url))
    return page


@pytest.fixture
def page(browser: Any, watch: Watch) -> Iterator[Any]:
    p = new_page(browser, watch)
    yield p
    p.context.close()
    assert not watch.errors, watch.errors
    assert not watch.foreign, f"requests left the server: {watch.foreign}"


def sign_in(page: Any, key: str, then: str = "/console/datasets") -> None:
    page.goto(f"/console/login?next={then}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: urlparse(url).path == then)
    page.wait_for_selector("html[data-ready]")
