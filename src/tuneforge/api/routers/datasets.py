"""/v1/files/{file_id}/preview|conversations|clean|split: an uploaded file as a dataset (TuneForge additions,
used by the console's Datasets page)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

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
from tuneforge.errors import DataError, DataProblem
from tuneforge.store.datasets import clean_file, inspect_file, split_file
from tuneforge.store.repositories import FileRepo
from tuneforge.tasks.generation.data import detect_format, normalize_row
from tuneforge.tasks.generation.reading import read_generation_rows

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


class MessagePublic(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = None
    weight: int | None = Field(None, description="Assistant messages of a supervised example: 1 is learned, 0 is "
                                                 "context only (OpenAI's `weight`).")


class ConversationPublic(BaseModel):
    """One record of a generation file, read as training reads it: a supervised example's ``messages``, or a
    preference pair's ``prompt``, ``chosen`` and ``rejected``; or the record's problems."""

    line: int | None
    format: str | None = Field(description="The layout the record was read as (chat, prompt_completion, alpaca, "
                                           "sharegpt, openai_preference, trl_preference); null when none fits.")
    messages: list[MessagePublic] | None = None
    prompt: list[MessagePublic] | None = None
    chosen: list[MessagePublic] | None = None
    rejected: list[MessagePublic] | None = None
    problems: list[ProblemPublic] = Field(default_factory=list)


class ConversationsPublic(BaseModel):
    object: Literal["file.conversations"] = "file.conversations"
    file: FilePublic
    data: list[ConversationPublic] = Field(description="The first records, normalized.")
    problems: list[ProblemPublic] = Field(description="Lines (or a file) that could not be read at all.")


def _conversation(line: int | None, record: Any, filename: str) -> ConversationPublic:
    read = normalize_row(record, file=filename, line=line, require_reply=False)
    if isinstance(read, list):
        fmt = detect_format(record) if isinstance(record, dict) else None
        return ConversationPublic(line=line, format=fmt, problems=[ProblemPublic.of(p) for p in read])
    fmt, example = read
    return ConversationPublic(line=line, format=fmt, **{k: example.get(k) for k in
                                                        ("messages", "prompt", "chosen", "rejected")})


@router.get("/{file_id}/conversations", response_model=ConversationsPublic,
            summary="Preview a chat file as conversations")
def conversations(file_id: str, principal: TrainPrincipal, session: SessionDep, storage: StorageDep,
                  limit: Annotated[int, Query(ge=0, le=200)] = 20) -> ConversationsPublic:
    """The first records of a generation file (chat, prompt/completion, Alpaca, ShareGPT or preference pairs) as
    the conversations training reads: roles, texts, each assistant message's ``weight``, or a pair's chosen and
    rejected answers. A record that does not read gives its problems instead."""
    f = FileRepo(session, principal.tenant_id).get(file_id)
    path, filename = storage.local_path(f.storage_key), f.filename
    session.rollback()  # reading a large file holds no transaction open
    unreadable: list[DataProblem]  # lines that are not JSON objects; the others are still shown
    try:
        rows, unreadable = read_generation_rows(path)
    except DataError as e:
        rows, unreadable = [], e.problems
    named = [ProblemPublic.of(p).model_copy(update={"file": filename}) for p in unreadable]
    return ConversationsPublic(file=FilePublic.of(f), problems=named,
                               data=[_conversation(r.line, r.data, filename) for r in rows[:limit]])


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
