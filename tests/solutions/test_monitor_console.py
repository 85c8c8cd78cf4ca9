"""The monitor's console page in a real browser: accessibility in both themes, a phone-sized screen, the series
chart, alerts and items from the API, and adding an alert rule with the keyboard."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import PHONE, new_page, why_no_browser

A11Y = (Path(__file__).parents[1] / "console" / "a11y.js").read_text(encoding="utf-8")
BASE = "/v1/solutions/monitor"
WORDS = ["board", "dividend", "meeting", "supplier", "factory", "quarter", "report", "investors", "market", "chief",
         "officer", "plan", "product", "launch", "store", "service", "cloud", "chips", "deal", "europe", "asia"]

_NO_BROWSER = why_no_browser()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(_NO_BROWSER is not None, reason=_NO_BROWSER or "")]


@pytest.fixture(scope="module")
def tenant(server) -> str:
    _, key = server.tenant()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    t0 = now - timedelta(days=3)
    rng = random.Random(0)
    items = [{"text": "$AAPL " + " ".join(rng.sample(WORDS, 6)), "label": "bearish" if k % 6 == 0 else "neutral",
              "published_at": (t0 + timedelta(hours=2 * k)).isoformat()} for k in range(34)]
    burst = [{"text": "Apple plunges: " + " ".join(rng.sample(WORDS, 6)), "label": "bearish",
              "published_at": (now - timedelta(minutes=50 - 10 * k)).isoformat()} for k in range(5)]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        assert http.post(f"{BASE}/watchlist", json={"name": "AAPL", "aliases": ["Apple"]}).status_code == 200
        assert http.post(f"{BASE}/rules", json={"name": "apple turns", "entity": "AAPL", "window_minutes": 120,
                                                 "baseline_minutes": 4320, "min_items": 4}).status_code == 200
        assert http.post(f"{BASE}/items", json={"items": items}).json()["stored"] == len(items)
        assert len(http.post(f"{BASE}/items", json={"items": burst}).json()["alerts"]) == 1
    return key


def _open(page: Any, key: str) -> None:
    page.goto("/console/login")
    page.evaluate("k => sessionStorage.setItem('tf_key', k)", key)
    page.goto("/console/solutions/monitor")
    page.wait_for_selector("html[data-ready]")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_monitor_page_is_accessible_and_shows_the_data(browser, watch, tenant, theme):
    page = new_page(browser, watch, scheme=theme)
    _open(page, tenant)
    assert page.evaluate("document.documentElement.dataset.theme") == theme
    problems = page.evaluate(A11Y)
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)
    assert int(page.get_attribute("#series-chart", "data-points")) > 0
    assert page.input_value("#entity") == "AAPL"
    assert page.locator("#alerts-table tbody tr").count() == 1
    assert "Apple plunges" in page.inner_text("#alerts-table")
    assert page.locator("#items-table tbody tr").count() == 39
    assert "apple turns" in page.inner_text("#rules-table")
    page.context.close()
    assert not watch.errors and not watch.foreign, (watch.errors, watch.foreign)


def test_monitor_page_fits_a_phone_and_adds_a_rule_with_the_keyboard(browser, watch, tenant):
    page = new_page(browser, watch, viewport=PHONE)
    _open(page, tenant)
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    wide = page.evaluate("""[...document.querySelectorAll('main *')]
        .filter(e => !e.closest('.table-wrap') && e.getBoundingClientRect().right > window.innerWidth + 1)
        .map(e => e.tagName + '#' + e.id).slice(0, 8)""")
    assert width[0] <= width[1] + 1, (width, wide)
    page.focus("#rule-name")
    page.keyboard.type("tesla volume")
    page.keyboard.press("Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type("TSLA")
    page.select_option("#rule-metric", "volume")
    page.focus("#rule-add")
    page.keyboard.press("Enter")
    page.locator("#rules-table tbody tr", has_text="tesla volume").wait_for()
    assert "TSLA" in page.inner_text("#rules-table")
    page.fill("#rule-webhook", "not a url")
    page.click("#rule-add")
    page.wait_for_selector("#rule-error:not([hidden])")
    assert "webhook_url" in page.inner_text("#rule-error")
    page.context.close()
    assert not watch.errors, watch.errors
