"""The recommender's console page in a real browser: accessibility in both themes with results on the page, a
phone-sized screen, recommending and finding similar items with the keyboard, recording a like, registering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.browser import PHONE, new_page, why_no_browser
from tests.solutions.test_recommender import CONFIG, catalogue, events
from tuneforge.solutions.recommender.data import parse_interactions, parse_items
from tuneforge.solutions.recommender.model import RecommenderConfig, train_recommender
from tuneforge.store.models import Tenant

A11Y = (Path(__file__).parents[1] / "console" / "a11y.js").read_text(encoding="utf-8")
BASE = "/v1/solutions/recommender"

_NO_BROWSER = why_no_browser()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(_NO_BROWSER is not None, reason=_NO_BROWSER or "")]


@pytest.fixture(scope="module")
def tenant(server, tiny_bert) -> str:
    name, key = server.tenant()
    with server.app.state.tuneforge.sessions() as s:  # each tenant has its own import folder
        tenant_id = s.scalar(select(Tenant.id).where(Tenant.name == name))
    imports = server.app.state.tuneforge.settings.data_dir / "imports" / tenant_id
    model = train_recommender(parse_interactions(((None, r) for r in events()), file="events"),
                              parse_items(((None, r) for r in catalogue()), file="items"),
                              RecommenderConfig(base_model=str(tiny_bert), **{**CONFIG, "steps": 3}))
    model.save(imports / "films")
    shutil.copytree(imports / "films", imports / "films-2")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        r = http.post(BASE, json={"name": "films", "bundle": "films"})
        assert r.status_code == 200, r.text
    return key


def _open(page: Any, key: str) -> None:
    page.goto("/console/login")
    page.evaluate("k => sessionStorage.setItem('tf_key', k)", key)
    page.goto("/console/solutions/recommender")
    page.wait_for_selector("html[data-ready]")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_recommender_page_is_accessible_and_recommends(browser, watch, tenant, theme):
    page = new_page(browser, watch, scheme=theme)
    _open(page, tenant)
    assert page.evaluate("document.documentElement.dataset.theme") == theme
    assert "films" in page.inner_text("#recommenders-table")
    page.focus("#rec-user")
    page.keyboard.type("0")
    page.keyboard.press("Enter")
    page.wait_for_selector("#rec-results li >> nth=2")
    assert "Because you liked" in page.inner_text("#rec-results")
    page.focus("#sim-item")
    page.keyboard.type("f9")
    page.keyboard.press("Enter")
    page.wait_for_selector("#sim-results li")
    assert "text similarity" in page.inner_text("#sim-results")
    problems = page.evaluate(A11Y)  # checked with results on the page
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)
    page.context.close()
    assert not watch.errors and not watch.foreign, (watch.errors, watch.foreign)


def test_recommender_page_fits_a_phone_records_and_registers(browser, watch, tenant):
    page = new_page(browser, watch, viewport=PHONE)
    _open(page, tenant)
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1] + 1, width
    # a newcomer likes a boring film: their recommendations follow it and say why
    page.fill("#event-user", "newcomer")
    page.fill("#event-item", "b1")
    page.click("#event-button")
    page.wait_for_selector("#flash:not([hidden])")
    page.fill("#rec-user", "newcomer")
    page.click("#rec-button")
    page.wait_for_selector("#rec-results li")
    assert "Because you liked Boring 1" in page.inner_text("#rec-results")
    page.fill("#event-item", "nope")
    page.click("#event-button")
    page.wait_for_selector("#rec-error:not([hidden])")
    assert "nope" in page.inner_text("#rec-error")
    page.fill("#new-name", "second")
    page.fill("#new-bundle", "films-2")
    page.click("#create-button")
    page.wait_for_selector("#recommenders-table tbody tr >> nth=1")
    assert "second" in page.inner_text("#rec-select")
    page.context.close()
    assert not watch.errors and not watch.foreign, (watch.errors, watch.foreign)
