"""/v1/files/{file_id}/preview|clean|split: an uploaded file as a dataset (TuneForge additions, used by the
console's Datasets page)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tuneforge.api.deps import SessionDep, SettingsDep, StorageDep, TrainPrincipal
from tuneforge.api.schemas import (
    CleanCreate,
    CleanPublic,
    FilePreviewPublic,
    FilePublic,
    ProblemPublic,
    SplitCreate,
    SplitPublic,
    TaskName,
)
from tuneforge.data import CleanOptions
from tuneforge.store.datasets import clean_file, inspect_file, split_file

router = APIRouter(prefix="/v1/files", tags=["datasets"])


@router.get("/{file_id}/preview", response_model=FilePreviewPublic,
            summary="Preview a file and validate it for a task")
def preview(file_id: str, principal: TrainPrincipal, session: SessionDep, storage: StorageDep,
            task: TaskName | None = None,
            limit: Annotated[int, Query(ge=0, le=200)] = 20) -> FilePreviewPublic:
    r = inspect_file(session, tenant_id=principal.tenant_id, storage=storage, file_id=file_id, task=task,
                     limit=limit)
    return FilePreviewPublic(file=FilePublic.of(r.file), task=r.task, format=r.format, records=r.records,
                             columns=r.columns, rows=r.rows, valid=r.valid, examples=r.examples,
                             problems=[ProblemPublic.of(p) for p in r.problems],
                             warnings=[ProblemPublic.of(p) for p in r.warnings], labels=r.labels,
                             multi_label=r.multi_label)


@router.post("/{file_id}/clean", response_model=CleanPublic, summary="Clean a file into a new file")
def clean(file_id: str, body: CleanCreate, principal: TrainPrincipal, session: SessionDep, storage: StorageDep,
          settings: SettingsDep) -> CleanPublic:
    options = CleanOptions(lowercase=body.lowercase, strip_html=body.strip_html, dedupe=body.dedupe,
                           near_dedupe=body.near_dedupe, drop_conflicts=body.drop_conflicts,
                           min_chars=body.min_chars, max_chars=body.max_chars)
    new, summary = clean_file(session, principal=principal, storage=storage, file_id=file_id, task=body.task,
                              options=options, max_bytes=settings.max_upload_bytes)
    return CleanPublic(file=FilePublic.of(new), **summary)


@router.post("/{file_id}/split", response_model=SplitPublic, summary="Split a file into train/dev/test files")
def split(file_id: str, body: SplitCreate, principal: TrainPrincipal, session: SessionDep, storage: StorageDep,
          settings: SettingsDep) -> SplitPublic:
    parts = split_file(session, principal=principal, storage=storage, file_id=file_id, task=body.task,
                       dev=body.dev, test=body.test, seed=body.seed, max_bytes=settings.max_upload_bytes)
    return SplitPublic(files={k: FilePublic.of(f) for k, f in parts.items()})
