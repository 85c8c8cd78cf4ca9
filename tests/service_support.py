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
