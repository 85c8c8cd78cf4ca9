"""``Idempotency-Key`` on creating POSTs: the same key and request return the first response; the same key with
another request is refused with 422; a key whose first request is still running answers 409 (retry later).

The key is stored (per tenant) before the work starts, in its own transaction, so that two concurrent requests
with one key cannot both create something. A request that fails releases its key, so the client can retry.
Keys are kept for 24 hours.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneforge.errors import ConflictError, IdempotencyError
from tuneforge.store.db import utcnow
from tuneforge.store.models import IdempotencyRecord
from tuneforge.store.repositories import IdempotencyRepo

__all__ = ["TTL", "fingerprint", "idempotent"]

TTL = timedelta(hours=24)


def fingerprint(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _replay_or_refuse(rec: IdempotencyRecord, endpoint: str, request_hash: str) -> JSONResponse:
    if rec.endpoint != endpoint or rec.request_hash != request_hash:
        raise IdempotencyError("This Idempotency-Key was already used with a different request; use a new key "
                               "for a new request.", param="Idempotency-Key")
    if rec.status_code is None:
        raise ConflictError("A request with this Idempotency-Key is still being processed; retry shortly.",
                            code="idempotency_key_in_use", param="Idempotency-Key")
    return JSONResponse(rec.response, status_code=rec.status_code, headers={"idempotent-replayed": "true"})


def idempotent(session: Session, *, tenant_id: str, key: str | None, endpoint: str, request_hash: str,
               create: Callable[[], BaseModel]) -> BaseModel | JSONResponse:
    if not key:
        return create()
    repo = IdempotencyRepo(session, tenant_id)
    rec = repo.by_key(key)
    if rec is not None and rec.created_at < utcnow() - TTL:
        session.delete(rec)
        session.flush()
        rec = None
    if rec is not None:
        out = _replay_or_refuse(rec, endpoint, request_hash)
        session.rollback()
        return out
    try:
        pending = repo.add(IdempotencyRecord(key=key, endpoint=endpoint, request_hash=request_hash,
                                             created_at=utcnow()))
        session.commit()
    except IntegrityError:  # a concurrent request with the same key got there first
        session.rollback()
        rec = repo.by_key(key)
        if rec is None:
            raise ConflictError("A request with this Idempotency-Key is still being processed; retry shortly.",
                                code="idempotency_key_in_use", param="Idempotency-Key") from None
        return _replay_or_refuse(rec, endpoint, request_hash)
    try:
        result = create()
    except BaseException:
        session.rollback()
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == pending.id))
        session.commit()
        raise
    pending.status_code, pending.response = 200, result.model_dump(mode="json")
    session.add(pending)
    session.commit()
    return result
