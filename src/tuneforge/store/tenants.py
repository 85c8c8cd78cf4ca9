"""Tenants, plans, quotas and API keys: the services behind ``tuneforge admin`` and the API's authentication.

An API key is ``tf_`` followed by 43 URL-safe characters (256 random bits), so secret scanners can recognise it;
only its SHA-256 is stored (a fast hash is right for a high-entropy secret: there is nothing to brute-force),
with its first characters for display. The secret is shown once, when created.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from tuneforge.store.db import utcnow
from tuneforge.store.ids import new_id
from tuneforge.store.models import ApiKey, Plan, Tenant
from tuneforge.store.repositories import ApiKeyRepo

__all__ = ["DEFAULT_PLANS", "QUOTA_FIELDS", "SCOPES", "Principal", "Quotas", "authenticate", "create_api_key",
           "create_tenant", "ensure_plans", "get_tenant", "hash_secret", "list_keys", "list_tenants",
           "quotas_for", "revoke_key", "revoke_tenant_key", "set_disabled", "set_plan", "set_quotas"]

SCOPES = ("train", "predict", "admin")
KEY_PREFIX = "tf_"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: quota name -> unit, in the order shown by the CLI
QUOTA_FIELDS = {"max_concurrent_jobs": "jobs", "trained_tokens_per_month": "tokens",
                "requests_per_minute": "requests", "storage_bytes": "bytes", "tokens_per_minute": "tokens"}

DEFAULT_PLANS: list[dict[str, Any]] = [
    {"name": "trial", "title": "Free trial (14 days)", "max_concurrent_jobs": 1,
     "trained_tokens_per_month": 2_000_000, "requests_per_minute": 120, "storage_bytes": 100 * 2**20,
     "tokens_per_minute": 40_000, "trial_days": 14},
    {"name": "starter", "title": "Starter", "max_concurrent_jobs": 2, "trained_tokens_per_month": 50_000_000,
     "requests_per_minute": 1_200, "storage_bytes": 5 * 2**30, "tokens_per_minute": 400_000, "trial_days": None},
    {"name": "pro", "title": "Pro", "max_concurrent_jobs": 8, "trained_tokens_per_month": 500_000_000,
     "requests_per_minute": 6_000, "storage_bytes": 50 * 2**30, "tokens_per_minute": 2_000_000,
     "trial_days": None},
]


@dataclass(frozen=True)
class Quotas:
    max_concurrent_jobs: int
    trained_tokens_per_month: int
    requests_per_minute: int
    storage_bytes: int
    #: prompt and completion tokens of chat and completions per minute
    tokens_per_minute: int


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant behind an API key, with the key's scopes and the tenant's quotas."""

    tenant_id: str
    tenant_name: str
    plan: str
    key_id: str
    scopes: frozenset[str]
    quotas: Quotas
    trial_ends_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def has(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def require(self, scope: str) -> None:
        if not self.has(scope):
            raise PermissionDeniedError(
                f"This API key lacks the '{scope}' scope (it has: {', '.join(sorted(self.scopes))}).",
                code="missing_scope",
                hint=f"Create a key with it: tuneforge admin create-key {self.tenant_name} --scope {scope}")

    @property
    def trial_expired(self) -> bool:
        return self.trial_ends_at is not None and self.trial_ends_at <= utcnow()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def ensure_plans(session: Session) -> None:
    """Insert the default plans that are missing (existing plans, possibly edited by an operator, are kept)."""
    have = set(session.scalars(select(Plan.name)))
    for p in DEFAULT_PLANS:
        if p["name"] not in have:
            session.add(Plan(**p))
    session.commit()


def quotas_for(tenant: Tenant, plan: Plan) -> Quotas:
    return Quotas(**{name: (getattr(tenant, f"q_{name}") if getattr(tenant, f"q_{name}") is not None
                            else getattr(plan, name)) for name in QUOTA_FIELDS})


def _plan(session: Session, name: str) -> Plan:
    plan = session.get(Plan, name)
    if plan is None:
        names = ", ".join(session.scalars(select(Plan.name).order_by(Plan.name)))
        raise ConfigError(f"plan: unknown plan '{name}' (choose one of: {names})")
    return plan


def _check_overrides(overrides: dict[str, int | None]) -> dict[str, int | None]:
    problems = [f"{k}: unknown quota (allowed: {', '.join(QUOTA_FIELDS)})" for k in overrides if k not in QUOTA_FIELDS]
    problems += [f"{k}: must be 0 or more, got {v}" for k, v in overrides.items() if v is not None and v < 0]
    if problems:
        raise ConfigError(problems)
    return overrides


def get_tenant(session: Session, name_or_id: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where((Tenant.name == name_or_id) | (Tenant.id == name_or_id)))
    if tenant is None:
        raise NotFoundError(f"No tenant named '{name_or_id}'.", hint="See them with: tuneforge admin list-tenants")
    return tenant


def create_tenant(session: Session, *, name: str, plan: str, overrides: dict[str, int | None] | None = None,
                  trial_days: int | None = None) -> tuple[Tenant, ApiKey, str]:
    """Create a tenant on ``plan`` with its first API key (all scopes). Returns the key's secret, shown once."""
    if not _NAME.match(name):
        raise ConfigError(f"name: '{name}' must be 1-64 lowercase letters, digits, '-' or '_', starting with a "
                          "letter or digit (it appears in model names)")
    if session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
        raise InvalidRequestError(f"A tenant named '{name}' already exists.", code="tenant_exists",
                                  hint="Choose another name, or add a key: tuneforge admin create-key " + name)
    p = _plan(session, plan)
    days = trial_days if trial_days is not None else p.trial_days
    tenant = Tenant(id=new_id("org"), name=name, plan_name=p.name,
                    trial_ends_at=utcnow() + timedelta(days=days) if days is not None else None,
                    **{f"q_{k}": v for k, v in _check_overrides(overrides or {}).items()})
    session.add(tenant)
    session.flush()
    key, secret = _new_key(session, tenant, scopes=list(SCOPES), name="first key")
    session.commit()
    return tenant, key, secret


def _new_key(session: Session, tenant: Tenant, *, scopes: list[str], name: str) -> tuple[ApiKey, str]:
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ConfigError(f"scope: {', '.join(bad) or 'none given'} (allowed: {', '.join(SCOPES)})")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(id=new_id("key", 16), tenant_id=tenant.id, name=name, prefix=secret[:10],
                 secret_hash=hash_secret(secret), scopes=" ".join(sorted(set(scopes))))
    session.add(key)
    return key, secret


def create_api_key(session: Session, *, tenant: str, scopes: list[str], name: str = "") -> tuple[ApiKey, str]:
    t = get_tenant(session, tenant)
    key, secret = _new_key(session, t, scopes=scopes, name=name)
    session.commit()
    return key, secret


def revoke_key(session: Session, *, key: str) -> ApiKey:
    """Revoke a key by its id (``key-…``) or its displayed prefix (``tf_…``)."""
    rows = list(session.scalars(select(ApiKey).where((ApiKey.id == key) | (ApiKey.prefix == key))))
    if not rows:
        raise NotFoundError(f"No API key '{key}'.", hint="See them with: tuneforge admin list-keys TENANT")
    if len(rows) > 1:
        raise InvalidRequestError(f"'{key}' matches {len(rows)} keys; pass the key id instead.")
    rows[0].revoked_at = rows[0].revoked_at or utcnow()
    session.commit()
    return rows[0]


def revoke_tenant_key(session: Session, *, tenant_id: str, key_id: str, current_key_id: str) -> ApiKey:
    """Revoke one of the tenant's own keys (the API's ``DELETE /v1/api_keys/{id}``); another tenant's key is a
    404. The key making the request cannot revoke itself: that would lock its caller out mid-session."""
    from tuneforge.store.repositories import ApiKeyRepo

    key = ApiKeyRepo(session, tenant_id).get(key_id, for_update=True)
    if key.id == current_key_id:
        raise ConflictError(f"{key.id} is the key this request is signed with; sign in with another key to revoke "
                            "it.", code="key_in_use", param="key_id")
    key.revoked_at = key.revoked_at or utcnow()
    session.commit()
    return key


def set_plan(session: Session, *, tenant: str, plan: str, trial_days: int | None = None) -> Tenant:
    """Move a tenant to ``plan``; a trial plan starts a new trial period, a paid one ends the trial."""
    t = get_tenant(session, tenant)
    p = _plan(session, plan)
    t.plan_name = p.name
    days = trial_days if trial_days is not None else p.trial_days
    t.trial_ends_at = utcnow() + timedelta(days=days) if days is not None else None
    session.commit()
    return t


def set_quotas(session: Session, *, tenant: str, overrides: dict[str, int | None]) -> Tenant:
    """Override quotas of one tenant (``None`` removes an override, back to the plan's limit)."""
    t = get_tenant(session, tenant)
    for k, v in _check_overrides(overrides).items():
        setattr(t, f"q_{k}", v)
    session.commit()
    return t


def set_disabled(session: Session, *, tenant: str, disabled: bool) -> Tenant:
    """Disable a tenant (every request answers 403; data is kept) or enable it again."""
    t = get_tenant(session, tenant)
    t.disabled_at = (t.disabled_at or utcnow()) if disabled else None
    session.commit()
    return t


def list_tenants(session: Session) -> list[tuple[Tenant, Plan]]:
    return [(t, p) for t, p in session.execute(
        select(Tenant, Plan).join(Plan, Tenant.plan_name == Plan.name).order_by(Tenant.created_at))]


def list_keys(session: Session, *, tenant: str) -> list[ApiKey]:
    t = get_tenant(session, tenant)
    return list(session.scalars(ApiKeyRepo(session, t.id).select().order_by(ApiKey.created_at)))


def authenticate(session: Session, secret: str | None) -> Principal:
    """The principal behind an API key; :class:`AuthError` for a missing, unknown or revoked key."""
    if not secret:
        raise AuthError("You didn't provide an API key. Pass it as 'Authorization: Bearer tf_...'.",
                        code="missing_api_key")
    row = session.execute(
        select(ApiKey, Tenant, Plan).join(Tenant, ApiKey.tenant_id == Tenant.id)
        .join(Plan, Tenant.plan_name == Plan.name).where(ApiKey.secret_hash == hash_secret(secret))).first()
    shown = secret[:10] + "..." if len(secret) > 10 else "..."
    if row is None:
        raise AuthError(f"Incorrect API key provided: {shown}")
    key, tenant, plan = row
    if key.revoked_at is not None:
        raise AuthError(f"The API key {shown} was revoked.", code="revoked_api_key")
    if tenant.disabled_at is not None:
        raise PermissionDeniedError(f"The tenant '{tenant.name}' is disabled.", code="tenant_disabled")
    return Principal(tenant_id=tenant.id, tenant_name=tenant.name, plan=plan.name, key_id=key.id,
                     scopes=frozenset(key.scopes.split()), quotas=quotas_for(tenant, plan),
                     trial_ends_at=tenant.trial_ends_at)
