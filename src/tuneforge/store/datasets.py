"""Uploaded files as datasets: preview and validate one for a task, clean it, split it.

The console's Datasets page calls these through ``/v1/files/{id}/preview|clean|split``. They read the stored file
with the data layer (the same validation ``tuneforge data check`` and a job's file check run), and cleaning and
splitting store their results as new files of the tenant (the original is never changed), within its storage
quota. Problems name the customer's file name, never a server path.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy.orm import Session

from tuneforge.data import CleanOptions, ColumnMap, Dataset, read_rows
from tuneforge.errors import DataError, DataProblem
from tuneforge.store.artifacts import upload_file
from tuneforge.store.models import File
from tuneforge.store.repositories import FileRepo
from tuneforge.store.storage import Storage
from tuneforge.store.tenants import Principal
from tuneforge.tasks import clean_dataset, get_task, load_dataset, split_dataset, write_dataset
from tuneforge.tasks import guess_task as _guess_task

__all__ = ["FileInspection", "clean_file", "guess_task", "inspect_file", "split_file"]

#: most rows a preview returns
MAX_PREVIEW = 200


@dataclass
class FileInspection:
    """A stored file read as a dataset for ``task``: its first rows, every problem and the label counts."""

    file: File
    task: str
    format: str
    records: int
    columns: list[str]
    rows: list[dict[str, Any]]
    valid: bool
    examples: int
    problems: list[DataProblem] = field(default_factory=list)
    warnings: list[DataProblem] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    multi_label: bool = False


def guess_task(columns: list[str]) -> str:
    """The task a file's columns suggest (each task's ``recognises``): tokens/tags → ner, question + context → qa,
    else classification."""
    return _guess_task(columns)


def _named(problems: list[DataProblem], path: str, filename: str) -> list[DataProblem]:
    return [replace(p, file=filename if p.file == path else PurePath(p.file).name) for p in problems]


def _label_counts(ds: Dataset) -> dict[str, int]:
    task = get_task(ds.task)
    counts: Counter[str] = Counter()
    for ex in ds.examples:
        counts.update(task.label_occurrences(ex))
    return dict(counts.most_common())


def _load(path: Path, filename: str, task: str, *, allow_empty: bool = False,
          columns: ColumnMap | None = None) -> Dataset:
    try:
        # min_classes as for training (only tasks with classes apply it)
        return load_dataset(path, task, columns=columns, min_classes=2, allow_empty=allow_empty)
    except DataError as e:
        raise DataError(_named(e.problems, str(path), filename),
                        hint="Fix these lines in your file and upload it again.") from None


def inspect_file(session: Session, *, tenant_id: str, storage: Storage, file_id: str, task: str | None = None,
                 limit: int = 20, columns: ColumnMap | None = None) -> FileInspection:
    """Preview ``file_id`` and validate it for ``task`` (guessed from its columns when None)."""
    if task is not None:
        get_task(task)  # an unknown task is a ConfigError naming the registered ones
    f = FileRepo(session, tenant_id).get(file_id)
    path = storage.local_path(f.storage_key)
    session.rollback()  # reading and validating a large file holds no transaction open
    try:
        fmt, raw = read_rows(path)
    except DataError as e:
        return FileInspection(file=f, task=task or "classification", format="unknown", records=0, columns=[],
                              rows=[], valid=False, examples=0, problems=_named(e.problems, str(path), f.filename))
    seen: dict[str, None] = {}
    for r in raw:
        for k in r.data:
            seen.setdefault(k, None)
    cols = list(seen)
    task = task or guess_task(cols)
    rows = [{"line": r.line, **r.data} for r in raw[:max(0, min(limit, MAX_PREVIEW))]]
    out = FileInspection(file=f, task=task, format=fmt, records=len(raw), columns=cols, rows=rows, valid=True,
                         examples=0)
    try:
        ds = _load(path, f.filename, task, columns=columns)
    except DataError as e:
        out.valid, out.problems = False, e.problems
        return out
    out.examples, out.labels, out.multi_label = len(ds), _label_counts(ds), ds.multi_label
    out.warnings = _named(ds.warnings, str(path), f.filename)
    return out


def _store(session: Session, *, principal: Principal, storage: Storage, ds: Dataset, filename: str,
           max_bytes: int) -> File:
    with tempfile.TemporaryDirectory(prefix="tuneforge-dataset-") as tmp:
        out = Path(tmp) / "data.jsonl"
        write_dataset(ds, out)
        with out.open("rb") as stream:
            return upload_file(session, principal=principal, storage=storage, stream=stream, filename=filename,
                               purpose="fine-tune", max_bytes=max_bytes)


def _stem(filename: str) -> str:
    return PurePath(filename).stem[:200] or "data"


def clean_file(session: Session, *, principal: Principal, storage: Storage, file_id: str, task: str,
               options: CleanOptions, max_bytes: int) -> tuple[File, dict[str, Any]]:
    """Clean ``file_id`` for ``task`` into a new file ``<name>.clean.jsonl``; returns it and what was done."""
    f = FileRepo(session, principal.tenant_id).get(file_id)
    path, name = storage.local_path(f.storage_key), f.filename
    session.rollback()
    ds, report = clean_dataset(_load(path, name, task, allow_empty=True), options)
    if len(ds) == 0:
        raise DataError([DataProblem(name, None, None, "cleaning removed every example")],
                        hint="Relax the cleaning options (for example min_chars) or check the file.")
    new = _store(session, principal=principal, storage=storage, ds=ds, filename=f"{_stem(name)}.clean.jsonl",
                 max_bytes=max_bytes)
    summary = {"kept": report.kept, "changed": report.changed, "counts": report.counts(),
               "label_renames": report.label_renames,
               "removed": [{"line": line, "reason": reason, "detail": detail} for line, reason, detail in
                           report.removed]}
    return new, summary


def split_file(session: Session, *, principal: Principal, storage: Storage, file_id: str, task: str, dev: float,
               test: float, seed: int, max_bytes: int) -> dict[str, File]:
    """Split ``file_id`` into ``<name>.train|dev|test.jsonl`` (stratified by label for classification)."""
    f = FileRepo(session, principal.tenant_id).get(file_id)
    path, name = storage.local_path(f.storage_key), f.filename
    session.rollback()
    parts = split_dataset(_load(path, name, task), dev=dev, test=test, seed=seed)
    stored: dict[str, File] = {}
    try:
        for part, ds in parts.items():
            stored[part] = _store(session, principal=principal, storage=storage, ds=ds,
                                  filename=f"{_stem(name)}.{part}.jsonl", max_bytes=max_bytes)
    except BaseException:
        # all parts or none: a quota hit on the last part must not leave the first ones behind
        from tuneforge.store.artifacts import delete_file

        for done in stored.values():
            with contextlib.suppress(Exception):
                delete_file(session, tenant_id=principal.tenant_id, storage=storage, file_id=done.id)
        raise
    return stored
