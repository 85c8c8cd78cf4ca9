"""`tuneforge admin ...`: the operator's commands over the same services the API uses."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from tuneforge.cli.service import register
from tuneforge.errors import NotFoundError
from tuneforge.store.db import make_engine, make_session_factory
from tuneforge.store.tenants import authenticate

KEY = re.compile(r"tf_[A-Za-z0-9_-]{40,}")


@pytest.fixture
def cli(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'tf.db'}"
    monkeypatch.setenv("TUNEFORGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TUNEFORGE_DATABASE_URL", url)
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=True)

    engine = make_engine(url)
    run.sessions = make_session_factory(engine)  # type: ignore[attr-defined]
    yield run
    engine.dispose()


def test_create_tenant_prints_its_first_key_once(cli):
    r = cli("admin", "create-tenant", "acme", "--plan", "starter", "--requests-per-minute", "99")
    assert r.exit_code == 0, r.output
    keys = KEY.findall(r.output)
    assert len(keys) == 1
    with cli.sessions() as s:
        p = authenticate(s, keys[0])
    assert p.tenant_name == "acme" and p.plan == "starter" and p.quotas.requests_per_minute == 99
    listing = cli("admin", "list-keys", "acme").output
    assert keys[0] not in listing and keys[0][:10] in listing  # only the prefix is ever shown again


def test_keys_scopes_revocation_and_plans(cli):
    cli("admin", "create-tenant", "acme")
    r = cli("admin", "create-key", "acme", "--scope", "predict", "--name", "web")
    key = KEY.findall(r.output)[0]
    with cli.sessions() as s:
        p = authenticate(s, key)
        assert p.scopes == {"predict"} and p.plan == "trial" and p.trial_ends_at is not None
    assert cli("admin", "set-plan", "acme", "pro").exit_code == 0
    assert cli("admin", "set-quota", "acme", "--max-concurrent-jobs", "5").exit_code == 0
    with cli.sessions() as s:
        p = authenticate(s, key)
        assert p.plan == "pro" and p.trial_ends_at is None and p.quotas.max_concurrent_jobs == 5
    assert "acme" in cli("admin", "list-tenants").output and "starter" in cli("admin", "list-plans").output
    assert cli("admin", "disable-tenant", "acme").exit_code == 0
    with cli.sessions() as s, pytest.raises(Exception, match="disabled"):
        authenticate(s, key)
    assert cli("admin", "enable-tenant", "acme").exit_code == 0
    assert cli("admin", "revoke-key", key[:10]).exit_code == 0
    with cli.sessions() as s, pytest.raises(Exception, match="revoked"):
        authenticate(s, key)


def test_errors_are_domain_errors(cli):
    r = cli("admin", "create-key", "nobody", "--scope", "train")
    assert isinstance(r.exception, NotFoundError)
    cli("admin", "create-tenant", "acme")
    r = cli("admin", "create-tenant", "acme")
    assert r.exit_code != 0 and "already exists" in str(r.exception)
