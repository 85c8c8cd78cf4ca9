"""/v1/files: upload, list, retrieve, delete and download training files."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse

from tuneforge.api.deps import Files, IdempotencyKey, SessionDep, SettingsDep, StorageDep, TrainPrincipal
from tuneforge.api.idempotency import fingerprint, idempotent
from tuneforge.api.schemas import FileDeleted, FilePublic, ListPublic
from tuneforge.store.artifacts import delete_file, upload_file
from tuneforge.store.models import File as FileRow

router = APIRouter(prefix="/v1/files", tags=["files"])


def _content_hash(upload: UploadFile) -> str:
    h = hashlib.sha256()
    while chunk := upload.file.read(1024 * 1024):
        h.update(chunk)
    upload.file.seek(0)
    return h.hexdigest()


@router.post("", response_model=FilePublic, summary="Upload a file")
def create_file(file: Annotated[UploadFile, File(description="JSONL, JSON, CSV, TSV or CoNLL.")],
                purpose: Annotated[str, Form()], principal: TrainPrincipal, session: SessionDep,
                settings: SettingsDep, storage: StorageDep, idempotency_key: IdempotencyKey = None) -> object:
    # The body was cut off at the limit while it was read (BodyLimits in api/middleware.py): a larger upload never
    # reaches the temp folder; upload_file checks the file itself against max_upload_bytes.
    digest = _content_hash(file) if idempotency_key else ""
    return idempotent(
        session, tenant_id=principal.tenant_id, key=idempotency_key, endpoint="POST /v1/files",
        request_hash=fingerprint(purpose, file.filename or "", digest),
        create=lambda: FilePublic.of(upload_file(session, principal=principal, storage=storage, stream=file.file,
                                                 filename=file.filename or "upload", purpose=purpose,
                                                 max_bytes=settings.max_upload_bytes)))


@router.get("", response_model=ListPublic, summary="List files")
def list_files(files: Files, after: str | None = None, limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
               purpose: str | None = None, order: Literal["asc", "desc"] = "desc") -> ListPublic:
    page = files.list(after=after, limit=limit, where=(FileRow.purpose == purpose) if purpose else None)
    data = [FilePublic.of(f) for f in page.data]
    return ListPublic.of(data if order == "desc" else data[::-1], page.has_more)


@router.get("/{file_id}", response_model=FilePublic, summary="Retrieve a file")
def retrieve_file(file_id: str, files: Files) -> FilePublic:
    return FilePublic.of(files.get(file_id))


@router.delete("/{file_id}", response_model=FileDeleted, summary="Delete a file")
def remove_file(file_id: str, principal: TrainPrincipal, session: SessionDep, storage: StorageDep) -> FileDeleted:
    f = delete_file(session, tenant_id=principal.tenant_id, storage=storage, file_id=file_id)
    return FileDeleted(id=f.id)


@router.get("/{file_id}/content", summary="Download a file's content")
def file_content(file_id: str, files: Files, storage: StorageDep) -> StreamingResponse:
    f = files.get(file_id)
    files.session.close()  # release the connection before streaming
    return StreamingResponse(storage.iter_bytes(f.storage_key), media_type="application/octet-stream",
                             headers={"content-disposition": content_disposition(f.filename)})


def content_disposition(filename: str) -> str:
    """``attachment`` with the name as RFC 6266 wants it: an ASCII ``filename=`` for old clients (characters
    outside printable ASCII, quotes and backslashes replaced) and the exact name as RFC 5987 ``filename*``."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in filename).strip() or "download"
    exact = quote(filename, safe="!#$&+-.^_`|~")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"
