"""Job options that name data or a model. Through the API each is a tenant-scoped id, never a server path.

A job's extra request fields become :class:`~tuneforge.training.config.TrainConfig` fields. Those that name a
file or a model (every ``Path`` field, and ``base_model``) would let a tenant read another tenant's data, or
probe the server's file system, if they were passed through; so each is either set by the job itself
(:data:`RESERVED`: ``data`` from ``training_file``, ``base_model`` from ``model``, ...), or given as an id that the
tenant's repositories resolve (:data:`ID_OPTIONS`: ``file-...`` by its FileRepo, ``ft:...`` by its ModelRepo), or
refused. A new ``Path`` field of TrainConfig is refused until it is listed here (fail closed).

Error messages never echo a value that is not an id, and never name a server path.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tuneforge.errors import InvalidRequestError, NotFoundError
from tuneforge.store.repositories import FileRepo, ModelRepo
from tuneforge.store.storage import Storage

__all__ = ["ID_OPTIONS", "MODEL_FIELDS", "RESERVED", "check_owned", "id_problems", "naming_fields", "placeholders",
           "resolve_options"]

#: TrainConfig fields a job sets itself (from training_file, validation_file, model, seed and metadata.task)
RESERVED = frozenset({"task", "data", "eval_data", "output", "base_model", "seed", "method"})
#: options a tenant gives as an id of one of its own objects: "file" (file-..., purpose fine-tune) or "model" (ft:...)
ID_OPTIONS: dict[str, str] = {"unlabeled_data": "file", "distill_from": "model"}
#: TrainConfig fields that name a model without being typed as a path
MODEL_FIELDS = frozenset({"base_model"})
_PREFIX = {"file": "file-", "model": "ft:"}
_WHAT = {"file": "the id of a file you uploaded with purpose 'fine-tune' (file-...)",
         "model": "the id of one of your fine-tuned models (ft:...)"}


def _names_path(annotation: Any) -> bool:
    if annotation is Path:
        return True
    return any(_names_path(a) for a in typing.get_args(annotation))


def naming_fields() -> set[str]:
    """Every TrainConfig field that names a file, a folder or a model."""
    from tuneforge.training.config import TrainConfig

    return {n for n, f in TrainConfig.model_fields.items() if _names_path(f.annotation)} | set(MODEL_FIELDS)


def _is_id(kind: str, value: Any) -> bool:
    return (isinstance(value, str) and value.startswith(_PREFIX[kind]) and "/" not in value and "\\" not in value
            and 0 < len(value) <= 255)


def id_problems(options: dict[str, Any]) -> list[str]:
    """What is wrong with the options that name data or a model (reserved ones are reported by the caller)."""
    problems = []
    for name in sorted(naming_fields() & set(options) - RESERVED):
        kind = ID_OPTIONS.get(name)
        value = options[name]
        if kind is None:
            problems.append(f"{name}: cannot be set through the API")
        elif value is not None and not _is_id(kind, value):
            problems.append(f"{name}: give {_WHAT[kind]}; paths and other values are not accepted here")
    return problems


def placeholders(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with each id option replaced by a dummy path, to validate the rest as a TrainConfig."""
    return {k: (f"{k}.placeholder" if k in ID_OPTIONS and v is not None else v) for k, v in options.items()}


def check_owned(session: Session, tenant_id: str, options: dict[str, Any]) -> None:
    """Each id option names an object of this tenant (another tenant's id reads exactly like a missing one).
    Values that are not ids are left to :func:`id_problems` (never looked up, never echoed)."""
    for name, kind in ID_OPTIONS.items():
        value = options.get(name)
        if value is None or not _is_id(kind, value):
            continue
        if kind == "file":
            f = _find_file(session, tenant_id, value)
            if f is None:
                raise InvalidRequestError(f"{name}: no such file: '{value}'", param=name, code="file_not_found")
            if f.purpose != "fine-tune":
                raise InvalidRequestError(f"{name}: file '{value}' was uploaded with purpose '{f.purpose}', not "
                                          "'fine-tune'", param=name, code="invalid_file_purpose")
        elif ModelRepo(session, tenant_id).find(value) is None:
            raise InvalidRequestError(f"{name}: no such model: '{value}'", param=name, code="model_not_found")


def _find_file(session: Session, tenant_id: str, file_id: str) -> Any:
    try:
        return FileRepo(session, tenant_id).get(file_id)
    except NotFoundError:
        return None


def resolve_options(session: Session, storage: Storage, tenant_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options as ``train`` takes them: each id replaced by the local path of the tenant's object. Raises
    :class:`InvalidRequestError` (naming the id, not a path) when one no longer exists."""
    problems = id_problems(options)
    if problems:
        raise InvalidRequestError("; ".join(problems), code="invalid_option")
    check_owned(session, tenant_id, options)
    out = dict(options)
    for name, kind in ID_OPTIONS.items():
        value = options.get(name)
        if value is None:
            continue
        obj = _find_file(session, tenant_id, value) if kind == "file" else ModelRepo(session, tenant_id).find(value)
        if obj is None:  # removed since check_owned: reads like any missing id
            raise InvalidRequestError(f"{name}: no such {kind}: '{value}'", param=name, code=f"{kind}_not_found")
        out[name] = str(storage.local_path(obj.storage_key))
    return out
