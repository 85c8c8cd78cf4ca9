from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.service_support import database, jsonl, make_settings, new_tenant, rows
from tuneforge.jobs.queue import JobQueue
from tuneforge.jobs.service import JobRequest, create_job
from tuneforge.settings import Settings
from tuneforge.store.artifacts import upload_file
from tuneforge.store.db import make_engine, make_session_factory, upgrade
from tuneforge.store.storage import LocalStorage
from tuneforge.store.tenants import authenticate


@dataclass
class Env:
    settings: Settings
    sessions: Any
    storage: LocalStorage
    queue: JobQueue

    def principal(self, secret: str) -> Any:
        with self.sessions() as s:
            return authenticate(s, secret)

    def upload(self, secret: str, data: bytes, filename: str = "train.jsonl") -> str:
        with self.sessions() as s:
            return upload_file(s, principal=self.principal(secret), storage=self.storage, stream=io.BytesIO(data),
                               filename=filename, purpose="fine-tune", max_bytes=10**7).id

    def job(self, secret: str, *, model: str = "tiny-bert", data: bytes | None = None, validation: bytes | None = None,
            epochs: int | str = 1, options: dict[str, Any] | None = None) -> str:
        train = self.upload(secret, data if data is not None else jsonl(rows() * 2))
        val = self.upload(secret, validation, "dev.jsonl") if validation is not None else None
        req = JobRequest(model=model, training_file=train, validation_file=val, task="classification",
                         hyperparameters={"n_epochs": epochs}, options=options or {}, suffix=None, seed=1,
                         metadata=None)
        with self.sessions() as s:
            return create_job(s, principal=self.principal(secret), settings=self.settings, req=req).id


def _env(url: str, tmp_path: Path, tiny_bert: Path, **overrides: Any) -> Env:
    settings = make_settings(tmp_path / "data", url, base_models={"tiny-bert": tiny_bert}, **overrides)
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    q = JobQueue(sessions, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts,
                 retry_backoff_seconds=settings.retry_backoff_seconds)
    return Env(settings, sessions, LocalStorage(settings.artifacts_dir), q)


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request, tmp_path, tiny_bert):
    """A fresh database (each test owns the whole queue) on SQLite and on PostgreSQL."""
    with database(request.param, tmp_path) as url:
        e = _env(url, tmp_path, tiny_bert)
        yield e
        e.sessions.kw["bind"].dispose()


@pytest.fixture
def sqlite_env(tmp_path, tiny_bert):
    e = _env(f"sqlite:///{tmp_path / 'tf.db'}", tmp_path, tiny_bert)
    yield e
    e.sessions.kw["bind"].dispose()


@pytest.fixture
def tenant(env):
    return new_tenant(env.sessions)[1]
