"""Helpers shared by the service's tests (tests/api, tests/jobs, tests/store): databases, settings, tenants."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tuneforge.settings import Settings

PG_URL = os.environ.get("TUNEFORGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_available() -> str | None:
    """None when the test PostgreSQL server answers, else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as e:  # noqa: BLE001
        return f"no PostgreSQL at {PG_URL} ({type(e).__name__}: {str(e).strip()[:120]})"
    return None


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema in the test database, as a SQLAlchemy URL whose search_path points at it; dropped after."""
    why = pg_available()
    if why:
        pytest.skip(why)
    import psycopg

    name = f"tf_test_{secrets.token_hex(6)}"
    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextlib.contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'tuneforge.db'}"
    else:
        with pg_schema() as url:
            yield url


def make_settings(data_dir: Path, url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir, "cache_dir": data_dir / "cache", "database_url": url, "embedded_workers": 0,
        "executor": "thread", "lease_seconds": 5.0, "heartbeat_seconds": 0.2, "poll_seconds": 0.1,
        "retry_backoff_seconds": 0.0, "usage_flush_seconds": 0.5, "api_docs": True,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def new_tenant(sessions: Any, *, plan: str = "pro", scopes: list[str] | None = None,
               **overrides: int) -> tuple[str, str]:
    """Create a tenant with a unique name; returns (name, API key secret)."""
    from tuneforge.store.tenants import create_api_key, create_tenant, ensure_plans

    name = f"t{secrets.token_hex(4)}"
    with sessions() as s:
        ensure_plans(s)
        _, _, secret = create_tenant(s, name=name, plan=plan, overrides=overrides)
        if scopes is not None:
            _, secret = create_api_key(s, tenant=name, scopes=scopes)
    return name, secret


def rows(n_good: int = 6, n_bad: int = 6) -> list[dict[str, str]]:
    good = ["a good movie", "great fun film", "i love this film", "very good", "a great film", "good fun"]
    bad = ["a bad movie", "awful and boring", "i hate this film", "very bad", "not good", "boring film"]
    return ([{"text": t, "label": "positive"} for t in good[:n_good]]
            + [{"text": t, "label": "negative"} for t in bad[:n_bad]])


def jsonl(rows_: list[dict[str, Any]]) -> bytes:
    import json

    return "".join(json.dumps(r) + "\n" for r in rows_).encode()


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` in a real uvicorn server on a free loopback port; yields its base URL."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


#: the labels of an untrained head per task, for installed models
INSTALL_LABELS = {"classification": ["negative", "positive"], "ner": ["O", "B-PER", "I-PER"], "qa": ["start", "end"]}


def install_model(app: Any, key: str, base: Path, task_name: str = "classification", name: str = "m", *,
                  max_length: int = 64, seed: int = 0, noise: float = 0.0) -> str:
    """A servable fine-tuned model of the tenant behind ``key``: ``base`` with an untrained head (and, with
    ``noise``, its encoder weights moved so that it differs from the base model's), max_length 64; returns its id."""
    import torch
    from transformers import AutoTokenizer

    from tuneforge import runs
    from tuneforge.store.db import utcnow
    from tuneforge.store.models import Model
    from tuneforge.store.tenants import authenticate
    from tuneforge.tasks import get_task

    labels = INSTALL_LABELS[task_name]
    state = app.state.tuneforge
    with state.sessions() as s:
        p = authenticate(s, key)
        model_id = f"ft:tiny-bert:{p.tenant_name}:{name}"
        storage_key = f"models/{p.tenant_id}/{name}"
        s.add(Model(id=model_id, tenant_id=p.tenant_id, job_id="ftjob-x", base_model="tiny-bert", task=task_name,
                    storage_key=storage_key, bytes=1, created_at=utcnow()))
        s.commit()
    out = state.storage.local_path(storage_key)
    torch.manual_seed(seed)
    model = get_task(task_name).build_model(base, labels, multi_label=False)
    if noise:
        with torch.no_grad():
            for w in model.base_model.parameters():
                w.add_(torch.randn_like(w) * noise)
    model.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    runs.write_manifest(out, {"name": name, "task": task_name, "labels": labels, "max_length": max_length,
                              "stride": 16, "multi_label": False, "method": "full",
                              "base_model": {"name": "tiny-bert", "path": str(base)}})
    return model_id
