"""The assistant's console page in a real browser: accessibility in both themes, a phone-sized screen, a
conversation typed with the keyboard, feedback on a reply, the handover queue, and creating an assistant from the
form."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import PHONE, new_page, why_no_browser

A11Y = (Path(__file__).parents[1] / "console" / "a11y.js").read_text(encoding="utf-8")
BASE = "/v1/solutions/assistant"
KB = [{"question": "how do i cancel my subscription", "answer": "Open Settings and press Cancel.", "intent": "cancel"},
      {"question": "where is my order", "answer": "Orders arrive within five days.", "intent": "delivery"}]

_NO_BROWSER = why_no_browser()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(_NO_BROWSER is not None, reason=_NO_BROWSER or "")]


@pytest.fixture(scope="module")
def tenant(server) -> str:
    _, key = server.tenant()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        r = http.post(f"{BASE}/assistants", json={"name": "help desk", "knowledge": KB, "encoder": "tiny-bert",
                                                  "config": {"threshold": 0.0}})
        assert r.status_code == 200, r.text
    return key


def _open(page: Any, key: str) -> None:
    page.goto("/console/login")
    page.evaluate("k => sessionStorage.setItem('tf_key', k)", key)
    page.goto("/console/solutions/assistant")
    page.wait_for_selector("html[data-ready]")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_assistant_page_is_accessible_and_converses(browser, watch, tenant, theme):
    page = new_page(browser, watch, scheme=theme)
    _open(page, tenant)
    assert page.evaluate("document.documentElement.dataset.theme") == theme
    assert "help desk" in page.inner_text("#assistants-table")
    page.focus("#chat-text")
    page.keyboard.type("where is my order")
    page.keyboard.press("Enter")
    page.wait_for_selector("#chat-log li.bot")
    bot = page.inner_text("#chat-log li.bot")
    assert "Orders arrive" in bot or "Open Settings" in bot  # threshold 0: always answers from the KB
    problems = page.evaluate(A11Y)  # checked with a reply and its feedback buttons on the page
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)
    page.get_by_role("button", name="Helpful", exact=True).click()
    # the table is re-rendered after the click (cleared, then filled): wait for the new row itself
    page.locator("#feedback-table tbody tr", has_text="where is my order").first.wait_for()
    page.focus("#chat-text")
    page.keyboard.type("can I talk to a human?")
    page.keyboard.press("Enter")
    page.wait_for_selector("#chat-log li.bot >> nth=1")
    assert "Handed over" in page.inner_text("#chat-log")
    assert page.is_disabled("#chat-text")
    # the handed-over conversation waits in the handover queue until a person marks it resolved
    row = page.locator("#queue-table tbody tr", has_text="can I talk to a human?")
    row.wait_for()
    assert "asked for a person" in row.inner_text()
    problems = page.evaluate(A11Y)
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)
    row.get_by_role("button", name="Resolved").click()
    page.wait_for_selector("#queue-empty:not([hidden])")
    assert page.locator("#queue-table tbody tr").count() == 0
    page.context.close()
    assert not watch.errors and not watch.foreign, (watch.errors, watch.foreign)


def test_assistant_page_fits_a_phone_and_creates_an_assistant(browser, watch, tenant):
    page = new_page(browser, watch, viewport=PHONE)
    _open(page, tenant)
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1] + 1, width
    page.fill("#new-kb", "not json")
    page.fill("#new-name", "second")
    page.click("#create-button")
    assert "line 1" in page.inner_text("#asst-error")
    page.fill("#new-kb", json.dumps(KB[0]))
    page.select_option("#new-encoder", "tiny-bert")
    page.click("#create-button")
    page.wait_for_selector("#assistants-table tbody tr >> nth=1")
    assert page.input_value("#chat-assistant") != ""
    assert "second" in page.inner_text("#chat-assistant")
    page.context.close()
    assert not watch.errors and not watch.foreign, (watch.errors, watch.foreign)
