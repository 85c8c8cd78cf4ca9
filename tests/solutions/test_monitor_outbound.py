"""Tenants' feed, page and webhook URLs may not point the server at its own network (SSRF), unless an operator
allows it; checked at creation and again on every request the server sends, redirects included."""

from __future__ import annotations

import httpx
import pytest

import tests.api.conftest as api_fixtures
from tuneforge.errors import InvalidRequestError
from tuneforge.utils.net import check_public_url, public_client

db_url, settings, api = api_fixtures.db_url, api_fixtures.settings, api_fixtures.api
BASE = "/v1/solutions/monitor"


@pytest.mark.parametrize("url", ["http://127.0.0.1:5432/", "http://localhost/x", "http://10.1.2.3/feed",
                                 "http://169.254.169.254/latest/meta-data/", "http://[::1]:8080/", "ftp://x.org/a"])
def test_local_and_private_addresses_are_refused(url):
    with pytest.raises(InvalidRequestError):
        check_public_url(url)


def test_public_addresses_pass_and_redirects_to_private_ones_are_stopped():
    check_public_url("http://93.184.215.14/feed.xml")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://127.0.0.1:6379/"})

    with (public_client(transport=httpx.MockTransport(handler), follow_redirects=True) as client,
          pytest.raises(InvalidRequestError, match="127.0.0.1")):
        client.get("http://93.184.215.14/feed.xml")


def test_the_api_refuses_private_urls_by_default(api):
    _, key = api.tenant()
    c = api.as_(key)
    r = c.post(f"{BASE}/sources", json={"name": "internal", "kind": "feed", "url": "http://127.0.0.1:5432/"})
    assert r.status_code == 400 and "private or local" in r.text and "TUNEFORGE_ALLOW_PRIVATE_URLS" in r.text
    r = c.post(f"{BASE}/rules", json={"metric": "volume", "webhook_url": "http://169.254.169.254/hook"})
    assert r.status_code == 400 and "webhook_url" in r.text
    assert c.get(f"{BASE}/sources").json()["data"] == [] and c.get(f"{BASE}/rules").json()["data"] == []
