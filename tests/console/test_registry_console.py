"""The registry page: a name's versions with their aliases, "Make production" and "Roll back" move the alias, the
history records both; it passes the accessibility checks."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.service_support import install_model

expect = pytest.importorskip("playwright.sync_api").expect
A11Y = (Path(__file__).parent / "a11y.js").read_text(encoding="utf-8")


def _production_row(page) -> str:
    rows = page.locator("#versions-table tbody tr")
    return next(rows.nth(i).locator("th").inner_text() for i in range(rows.count())
                if "production" in rows.nth(i).locator("td").first.inner_text())  # the aliases cell


def test_promote_and_roll_back_from_the_console(page, server, tiny_bert):
    _, key = server.tenant()
    m1 = install_model(server.app, key, tiny_bert, name="reg-one", seed=1)
    m2 = install_model(server.app, key, tiny_bert, name="reg-two", seed=2)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as http:
        assert http.post("/v1/registry/sst/versions", json={"model": m1, "alias": "production"}).status_code == 201
        assert http.post("/v1/registry/sst/versions", json={"model": m2}).status_code == 201
    page.goto(f"{server.url}/console/login")
    page.evaluate("k => sessionStorage.setItem('tf_key', k)", key)
    page.goto(f"{server.url}/console/registry?name=sst")
    page.wait_for_selector("html[data-ready]")
    assert page.locator("#versions-table tbody tr").count() == 2 and _production_row(page) == "1"
    assert not page.evaluate(A11Y)
    page.locator("#versions-table tbody tr").first.get_by_role("button", name="Make production").click()
    expect(page.locator("#flash")).to_be_visible()
    expect(page.locator("#history-table tbody tr")).to_have_count(4)
    assert _production_row(page) == "2"
    page.fill("#rollback-reason", "worse on tweets")
    page.click("#rollback-button")
    expect(page.locator("#history-table tbody tr")).to_have_count(5)
    assert _production_row(page) == "1"
    assert "worse on tweets" in page.locator("#history-table tbody tr").first.inner_text()
