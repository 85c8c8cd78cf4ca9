"""Fixtures of the hardening tests: one API on SQLite (the database is not what these tests are about) and real,
servable models (an untrained head over the tiny BERT) registered for a tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import Api, running_api
from tests.service_support import make_settings


@pytest.fixture
def hsettings(tmp_path, tiny_bert) -> Any:
    return make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'tf.db'}", base_models={"tiny-bert": tiny_bert})


@pytest.fixture
def hapi(hsettings) -> Iterator[Api]:
    with running_api(hsettings) as a:
        yield a
