"""Uploaded files and fine-tuned models: the services that keep the database and artifact storage in step.

Storage writes happen outside the transaction (they can be slow) and before the row that points at them is
committed; a failure between the two leaves at worst an unreferenced object, never a row without its bytes.
"""

from __future__ import annotations

import contextlib
from pathlib import PurePath
from typing import BinaryIO

from sqlalchemy.orm import Session

from tuneforge.errors import ConflictError, DataError, InvalidRequestError, PayloadTooLargeError, QuotaExceededError
from tuneforge.store.db import utcnow
from tuneforge.store.ids import new_id
from tuneforge.store.models import File, Model
from tuneforge.store.repositories import FileRepo, JobRepo, ModelRepo
from tuneforge.store.storage import Storage
from tuneforge.store.tenants import Principal

__all__ = ["PURPOSES", "delete_file", "delete_model", "upload_file"]

PURPOSES = ("fine-tune",)


def _extension(filename: str) -> str:
    from tuneforge.data import detect_format

    try:
        detect_format(filename)
    except DataError:
        raise InvalidRequestError(
            f"Cannot tell the format of '{filename}' from its extension; upload .jsonl, .json, .csv, .tsv or "
            ".conll.", param="file", code="unsupported_file_type") from None
    return PurePath(filename).suffix.lower()


def upload_file(session: Session, *, principal: Principal, storage: Storage, stream: BinaryIO, filename: str,
                purpose: str, max_bytes: int) -> File:
    """Store an upload under a generated name and record it; size and storage quota are enforced."""
    if purpose not in PURPOSES:
        raise InvalidRequestError(f"purpose: '{purpose}' is not supported here (use: {', '.join(PURPOSES)})",
                                  param="purpose", code="invalid_purpose")
    name = PurePath(filename or "upload").name[:255]
    ext = _extension(name)
    file_id = new_id("file")
    key = f"files/{principal.tenant_id}/{file_id}{ext}"
    files = FileRepo(session, principal.tenant_id)
    used = files.bytes_used() + ModelRepo(session, principal.tenant_id).bytes_used()
    session.rollback()  # end the read transaction before the (slow) upload
    limit = principal.quotas.storage_bytes
    room = max(0, limit - used)
    try:
        obj = storage.put_stream(key, stream, max_bytes=min(max_bytes, room))
    except OverflowError:
        if room < max_bytes:
            raise QuotaExceededError(
                f"This upload does not fit in your storage quota: {used:,} of {limit:,} bytes are used. Delete "
                "files or models you no longer need, or ask for a larger plan.",
                resource="storage", limit=limit, remaining=room, code="storage_limit") from None
        raise PayloadTooLargeError(f"The file is larger than the limit of {max_bytes:,} bytes.",
                                   param="file") from None
    try:
        f = files.add(File(id=file_id, filename=name, purpose=purpose, bytes=obj.size, sha256=obj.sha256,
                           storage_key=key, status="processed", created_at=utcnow()))
        session.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            storage.delete(key)
        raise
    return f


def delete_file(session: Session, *, tenant_id: str, storage: Storage, file_id: str) -> File:
    files = FileRepo(session, tenant_id)
    f = files.get(file_id, for_update=True)
    users = JobRepo(session, tenant_id).using_file(file_id)
    if users:
        raise ConflictError(f"File {file_id} is used by unfinished fine-tuning job(s) {', '.join(users)}; cancel "
                            "them or wait for them to finish.", code="file_in_use", param="file_id")
    files.delete(f)
    session.commit()
    storage.delete(f.storage_key)
    return f


def delete_model(session: Session, *, tenant_id: str, storage: Storage, model_id: str) -> Model:
    models = ModelRepo(session, tenant_id)
    m = models.get(model_id, for_update=True)
    models.delete(m)
    session.commit()
    storage.delete(m.storage_key)
    return m
