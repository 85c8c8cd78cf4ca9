"""Tenants, plans, quotas and API keys."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from tuneforge.errors import AuthError, ConfigError, InvalidRequestError, PermissionDeniedError
from tuneforge.store.db import utcnow
from tuneforge.store.models import ApiKey, Tenant
from tuneforge.store.tenants import (
    authenticate,
    create_api_key,
    create_tenant,
    ensure_plans,
    hash_secret,
    revoke_key,
    set_plan,
    set_quotas,
)


@pytest.fixture
def s(sessions):
    with sessions() as session:
        ensure_plans(session)
        yield session


def test_keys_are_stored_hashed_and_shown_once(s):
    tenant, key, secret = create_tenant(s, name="acme", plan="trial")
    assert secret.startswith("tf_") and len(secret) >= 40
    stored = s.scalar(select(ApiKey).where(ApiKey.id == key.id))
    assert stored.secret_hash == hash_secret(secret) and secret not in stored.secret_hash
    assert secret.startswith(stored.prefix) and len(stored.prefix) < 16
    dump = " ".join(str(r) for r in s.execute(text("SELECT * FROM api_keys")).all())
    assert secret not in dump
    p = authenticate(s, secret)
    assert p.tenant_id == tenant.id and p.scopes == {"train", "predict", "admin"}


def test_unknown_missing_and_revoked_keys_are_refused(s):
    _, key, secret = create_tenant(s, name="acme", plan="pro")
    with pytest.raises(AuthError, match="didn't provide"):
        authenticate(s, None)
    with pytest.raises(AuthError, match="Incorrect API key"):
        authenticate(s, "tf_" + "x" * 43)
    revoke_key(s, key=key.id)
    with pytest.raises(AuthError, match="revoked"):
        authenticate(s, secret)


def test_scopes_limit_what_a_key_may_do(s):
    create_tenant(s, name="acme", plan="pro")
    _, secret = create_api_key(s, tenant="acme", scopes=["predict"])
    p = authenticate(s, secret)
    p.require("predict")
    with pytest.raises(PermissionDeniedError, match="lacks the 'train' scope"):
        p.require("train")
    with pytest.raises(ConfigError, match="scope"):
        create_api_key(s, tenant="acme", scopes=["root"])


def test_quotas_come_from_the_plan_and_can_be_overridden(s):
    create_tenant(s, name="acme", plan="trial", overrides={"requests_per_minute": 7})
    _, _, secret = create_tenant(s, name="globex", plan="pro")
    acme = authenticate(s, create_api_key(s, tenant="acme", scopes=["admin"])[1])
    assert acme.quotas.requests_per_minute == 7 and acme.quotas.max_concurrent_jobs == 1
    assert acme.trial_ends_at is not None and not acme.trial_expired
    assert authenticate(s, secret).quotas.max_concurrent_jobs == 8 and authenticate(s, secret).trial_ends_at is None
    set_quotas(s, tenant="acme", overrides={"requests_per_minute": None, "max_concurrent_jobs": 3})
    acme = authenticate(s, create_api_key(s, tenant="acme", scopes=["admin"])[1])
    assert acme.quotas.requests_per_minute == 120 and acme.quotas.max_concurrent_jobs == 3
    set_plan(s, tenant="acme", plan="starter")
    assert s.scalar(select(Tenant).where(Tenant.name == "acme")).trial_ends_at is None


def test_trial_end_is_reported(s):
    _, _, secret = create_tenant(s, name="acme", plan="trial")
    t = s.scalar(select(Tenant).where(Tenant.name == "acme"))
    t.trial_ends_at = utcnow() - timedelta(days=1)
    s.commit()
    assert authenticate(s, secret).trial_expired


def test_bad_names_plans_and_duplicates_are_refused(s):
    with pytest.raises(ConfigError, match="name"):
        create_tenant(s, name="Bad Name!", plan="pro")
    with pytest.raises(ConfigError, match="unknown plan 'gold'"):
        create_tenant(s, name="acme", plan="gold")
    create_tenant(s, name="acme", plan="pro")
    with pytest.raises(InvalidRequestError, match="already exists"):
        create_tenant(s, name="acme", plan="pro")
    with pytest.raises(ConfigError, match="must be 0 or more"):
        set_quotas(s, tenant="acme", overrides={"storage_bytes": -1})
