"""The API suite runs twice: on SQLite and on the PostgreSQL server at 127.0.0.1:5432 (a fresh schema per run)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service_support import database, make_settings, new_tenant
from tuneforge.api import create_app


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(request, tmp_path_factory) -> Iterator[str]:
    with database(request.param, tmp_path_factory.mktemp(f"db-{request.param}")) as url:
        yield url


@pytest.fixture
def settings(db_url, tmp_path, tiny_bert):
    return make_settings(tmp_path / "data", db_url, base_models={"tiny-bert": tiny_bert})


@dataclass
class Api:
    """A TestClient with helpers: ``api.as_(key)`` sends requests with that API key."""

    client: TestClient
    app: Any

    @property
    def sessions(self) -> Any:
        return self.app.state.tuneforge.sessions

    def tenant(self, **kw: Any) -> tuple[str, str]:
        return new_tenant(self.sessions, **kw)

    def as_(self, key: str) -> Any:
        return _Authed(self.client, key)


class _Authed:
    def __init__(self, client: TestClient, key: str) -> None:
        self.client, self.key = client, key

    def __getattr__(self, method: str) -> Any:
        def call(url: str, **kw: Any) -> Any:
            headers = {"Authorization": f"Bearer {self.key}", **kw.pop("headers", {})}
            return getattr(self.client, method)(url, headers=headers, **kw)

        return call


@contextlib.contextmanager
def running_api(settings: Any) -> Iterator[Api]:
    app = create_app(settings)
    with TestClient(app) as client:
        yield Api(client, app)


@pytest.fixture
def api(settings) -> Iterator[Api]:
    with running_api(settings) as a:
        yield a


@pytest.fixture
def acme(api) -> Any:
    return api.as_(api.tenant()[1])


@pytest.fixture
def globex(api) -> Any:
    return api.as_(api.tenant()[1])
