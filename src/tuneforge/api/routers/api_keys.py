"""/v1/api_keys: the signed-in tenant's API keys (create, list, revoke) and the key in use."""

from __future__ import annotations

from fastapi import APIRouter

from tuneforge.api.deps import AdminPrincipal, CurrentPrincipal, SessionDep
from tuneforge.api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, ListPublic, WhoAmIPublic
from tuneforge.store.repositories import ApiKeyRepo
from tuneforge.store.tenants import create_api_key, revoke_tenant_key

router = APIRouter(prefix="/v1/api_keys", tags=["api keys"])


@router.get("/current", response_model=WhoAmIPublic, summary="The tenant and scopes of the key in use")
def current(principal: CurrentPrincipal) -> WhoAmIPublic:
    ends = principal.trial_ends_at
    return WhoAmIPublic(tenant=principal.tenant_name, plan=principal.plan, key_id=principal.key_id,
                        scopes=sorted(principal.scopes), trial_ends_at=int(ends.timestamp()) if ends else None)


@router.get("", response_model=ListPublic, summary="List the tenant's API keys (secrets are never shown again)")
def list_keys(principal: AdminPrincipal, session: SessionDep) -> ListPublic:
    keys = ApiKeyRepo(session, principal.tenant_id).list(limit=1000).data
    return ListPublic.of([ApiKeyPublic.of(k) for k in keys])


@router.post("", response_model=ApiKeyCreated, summary="Create an API key; its secret is in this response only")
def create(body: ApiKeyCreate, principal: AdminPrincipal, session: SessionDep) -> ApiKeyCreated:
    key, secret = create_api_key(session, tenant=principal.tenant_id, scopes=list(body.scopes), name=body.name)
    return ApiKeyCreated(**ApiKeyPublic.of(key).model_dump(), secret=secret)


@router.delete("/{key_id}", response_model=ApiKeyPublic, summary="Revoke an API key")
def revoke(key_id: str, principal: AdminPrincipal, session: SessionDep) -> ApiKeyPublic:
    return ApiKeyPublic.of(revoke_tenant_key(session, tenant_id=principal.tenant_id, key_id=key_id,
                                             current_key_id=principal.key_id))
