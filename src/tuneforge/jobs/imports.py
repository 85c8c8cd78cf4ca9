"""Bring your own run: a run folder trained with the CLI registered as one of a tenant's models.

``tuneforge admin import-model TENANT RUN_FOLDER --name NAME`` and ``POST /v1/models/import`` (a ``.tar.gz`` of the
folder) both end in :func:`import_run`: the folder is checked (a finished run's manifest, safetensors weights only,
no pickle files, a base model this server has), copied into the artifact store (``Storage.put_dir``) and recorded as
a job of method ``import`` (already succeeded) with its model, exactly as a trained job's model is recorded. The
model is then served, metered and isolated like any other: its id is ``ft:<base>:<tenant>:<name>:<8>``, and its
``name`` is accepted wherever a model id is (:meth:`~tuneforge.store.repositories.ModelRepo.find`).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from tuneforge.errors import ConflictError, InvalidRequestError, PayloadTooLargeError, QuotaExceededError, RunError
from tuneforge.jobs.queue import add_event
from tuneforge.settings import Settings
from tuneforge.store.db import utcnow
from tuneforge.store.ids import new_id
from tuneforge.store.models import Job, Model, Tenant
from tuneforge.store.repositories import IMPORT_METHOD, FileRepo, ModelRepo
from tuneforge.store.storage import Storage

__all__ = ["IMPORT_METHOD", "check_run_folder", "import_archive", "import_run"]

#: file types that hold pickles (code runs when they are loaded): a run to import has safetensors weights only
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill", ".npy", ".npz")
#: what is left out of the copy: interrupted-training state (optimizer pickles), not part of a finished model
SKIPPED = ("checkpoints",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: members a run archive may hold (a run folder has a dozen files)
MAX_MEMBERS = 10_000


def _refuse(message: str, *, param: str = "file", code: str = "invalid_run") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def check_name(session: Session, tenant_id: str, name: str, settings: Settings) -> None:
    from tuneforge.jobs.service import available_base_models, registry_name

    if not _NAME.match(name):
        raise _refuse(f"name: '{name}' must be 1 to 64 letters, digits, '.', '-' or '_' (starting with a letter or "
                      "digit)", param="name", code="invalid_name")
    if name in available_base_models(settings) or registry_name(name) is not None:
        raise _refuse(f"name: '{name}' is the name of a base model; choose another", param="name",
                      code="invalid_name")
    if ModelRepo(session, tenant_id).find(name) is not None:
        raise ConflictError(f"name: you already have a model named '{name}'; delete it first or choose another "
                            "name", param="name", code="model_exists")


def _files(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if rel.parts[0] in SKIPPED:
            continue
        if p.is_symlink():
            raise _refuse(f"{rel}: a symbolic link; a run folder to import holds plain files only")
        if p.is_file():
            out.append(p)
    return out


def check_run_folder(folder: Path, settings: Settings, *, local_base: bool) -> tuple[dict[str, Any], str, Path | None]:
    """The manifest of a run folder fit to import, its base model's name and the folder of that base on this
    server (None where the base is a registry model, found by name); an :class:`InvalidRequestError` naming the
    problem otherwise. ``local_base``: a base recorded as a folder that exists here is known too (the operator's
    CLI; never for uploads, whose manifests must not name server paths)."""
    from tuneforge import runs
    from tuneforge.jobs.service import registry_name
    from tuneforge.models.registry import BASE_MODELS

    folder = Path(folder)
    if not folder.is_dir():
        raise _refuse(f"{folder} is not a folder", param="run_folder")
    pickles = [p.relative_to(folder).as_posix() for p in _files(folder) if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        raise _refuse(f"{', '.join(pickles[:5])}: pickle file(s); only safetensors weights are imported (loading a "
                      "pickle runs code). Save the model with safe_serialization=True and remove them",
                      code="unsafe_weights")
    if not runs.has_manifest(folder):
        raise _refuse(f"{folder.name}: no {runs.MANIFEST} manifest; import the --output folder of a finished "
                      "`tuneforge train` run", code="missing_manifest")
    try:
        manifest = runs.read_manifest(folder)
    except RunError as e:
        raise _refuse(f"{folder.name}: the manifest or weights cannot be used: {e.message}",
                      code="invalid_manifest") from None
    if manifest.get("method") in (None, "base") or not isinstance(manifest.get("base_model"), dict):
        raise _refuse(f"{folder.name}: the manifest names no base model", code="invalid_manifest")
    base = manifest["base_model"]
    name = str(base.get("name") or "")
    registry = registry_name(name)
    if registry is not None and BASE_MODELS[registry].installed():
        return manifest, registry, None
    if name in settings.base_models:
        return manifest, name, Path(settings.base_models[name])
    recorded = base.get("path")
    if isinstance(recorded, str) and recorded:
        for known, path in settings.base_models.items():  # trained on this server's copy of an operator's model
            if Path(path).resolve() == Path(recorded).resolve():
                return manifest, known, Path(path)
        if local_base and Path(recorded).is_dir():
            return manifest, name, Path(recorded)
    from tuneforge.jobs.service import available_base_models

    raise _refuse(f"{folder.name}: its base model '{name}' is not known here (available: "
                  f"{', '.join(available_base_models(settings))}); the run can only be served on its own base",
                  code="unknown_base_model")


def _stage(folder: Path, manifest: dict[str, Any], base_path: Path | None) -> Path:
    """A copy of the run folder to hand to the storage (which moves it), with the manifest's base model pointing
    at this server's copy of it."""
    from tuneforge import runs

    staging = Path(tempfile.mkdtemp(prefix="tuneforge-import-"))
    dest = staging / "run"
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns(*SKIPPED), symlinks=True)
    if base_path is not None:
        manifest = {**manifest, "base_model": {**manifest["base_model"], "path": str(Path(base_path).resolve())}}
        runs.write_manifest(dest, manifest)
    return dest


def import_run(session: Session, *, tenant: Tenant, storage: Storage, settings: Settings, folder: Path, name: str,
               source: str, local_base: bool = False, room: int | None = None) -> Model:
    """Register the run in ``folder`` as ``tenant``'s model ``name`` (see the module docstring); ``room``: the
    bytes the tenant may still store (None: no limit, an operator's import)."""
    from tuneforge.jobs.service import model_name

    check_name(session, tenant.id, name, settings)
    manifest, base_name, base_path = check_run_folder(folder, settings, local_base=local_base)
    session.rollback()  # no transaction open during the copy
    staged = _stage(Path(folder), manifest, base_path)
    try:
        size = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
        if room is not None and size > room:
            raise QuotaExceededError(f"This model ({size:,} bytes) does not fit in your storage quota ({room:,} bytes "
                                     "left). Delete files or models you no longer need, or ask for a larger plan.",
                                     resource="storage", limit=room, remaining=room, code="storage_limit")
        job_id = new_id("ftjob")
        model_id = model_name(base_model=base_name, tenant=tenant.name, suffix=name, job_id=job_id)
        key = f"models/{tenant.id}/{job_id}"
        size = storage.put_dir(key, staged)
    finally:
        shutil.rmtree(staged.parent, ignore_errors=True)
    try:
        now = utcnow()
        config = manifest.get("config") or {}
        hp = {k: v for k, v in (("n_epochs", config.get("epochs")), ("batch_size", config.get("batch_size")))
              if v is not None}
        session.add(Job(id=job_id, tenant_id=tenant.id, base_model=base_name, task=manifest["task"],
                        training_file_id="", suffix=name, seed=int(config.get("seed") or 0), method=IMPORT_METHOD,
                        hyperparameters=hp, options={}, meta={"imported_from": source, "run": str(
                            manifest.get("name") or Path(folder).name)[:200], "tuning_method": str(
                            manifest.get("method"))}, status="succeeded", fine_tuned_model=model_id,
                        created_at=now, validated_at=now, started_at=now, finished_at=now))
        model = Model(id=model_id, tenant_id=tenant.id, job_id=job_id, base_model=base_name, task=manifest["task"],
                      storage_key=key, bytes=size, created_at=now)
        session.add(model)
        session.flush()
        add_event(session, job_id, f"Imported a {manifest.get('method')} run ({source}) as model {model_id} "
                                   f"(name '{name}').", data={"bytes": size, "name": name})
        session.commit()
    except BaseException:
        session.rollback()
        with contextlib.suppress(Exception):
            storage.delete(key)
        raise
    return model


def _safe_member(member: tarfile.TarInfo) -> PurePosixPath:
    path = PurePosixPath(member.name)
    if path.is_absolute() or any(p in ("..", "") for p in path.parts):
        raise _refuse(f"{member.name}: a path outside the archive's folder")
    if not (member.isfile() or member.isdir()):
        raise _refuse(f"{member.name}: not a plain file or folder (links and devices are refused)")
    return path


def _unpack(stream: BinaryIO, dest: Path, max_bytes: int) -> Path:
    """Extract a ``.tar.gz`` of a run folder into ``dest`` (plain files only, at most ``max_bytes`` unpacked) and
    return the run folder in it (the archive's root, or its one top folder)."""
    total = 0
    try:
        with tarfile.open(fileobj=stream, mode="r:*") as tar:
            for n, member in enumerate(tar):
                if n >= MAX_MEMBERS:
                    raise _refuse(f"the archive holds more than {MAX_MEMBERS:,} entries; it is not a run folder")
                rel = _safe_member(member)
                total += member.size
                if total > max_bytes:
                    raise PayloadTooLargeError(f"The run unpacks to more than {max_bytes:,} bytes (the upload "
                                               "limit, or the room left in your storage quota).", param="file")
                target = dest.joinpath(*rel.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is None:
                    continue
                with src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise _refuse(f"the upload is not a readable .tar.gz of a run folder ({e})") from None
    from tuneforge import runs

    entries = list(dest.iterdir())
    if not runs.has_manifest(dest) and len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest


def import_archive(session: Session, *, tenant: Tenant, storage_bytes: int, storage: Storage, settings: Settings,
                   stream: BinaryIO, name: str) -> Model:
    """An uploaded ``.tar.gz`` of a run folder imported as the tenant's model ``name``, within the tenant's storage
    quota (``storage_bytes``) and ``settings.max_upload_bytes``."""
    used = FileRepo(session, tenant.id).bytes_used() + ModelRepo(session, tenant.id).bytes_used()
    room = max(0, storage_bytes - used)
    check_name(session, tenant.id, name, settings)
    with tempfile.TemporaryDirectory(prefix="tuneforge-upload-") as tmp:
        folder = _unpack(stream, Path(tmp), min(room, 4 * settings.max_upload_bytes))
        return import_run(session, tenant=tenant, storage=storage, settings=settings, folder=folder, name=name,
                          source="api", room=room)
