"""The offline registry: a folder, usable with no service (``tuneforge registry ...``).

Layout under the root::

    .lock                         taken (flock) by every change, so two processes never interleave
    <name>/index.json             versions, aliases, earlier alias targets and the audit log (written atomically)
    <name>/versions/<N>/run/      version N: an immutable copy of the run folder (its checkpoints left out)
    <name>/versions/<N>/train.*   the run's training file, kept for replay
    <name>/test<ext>              the name's fixed test set

A version's files are copied to a temporary folder first and renamed into place under the lock, with the index
written last, so a reader (which takes no lock) sees a version completely or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneforge.errors import NotFoundError, StorageError
from tuneforge.store.registry.base import (
    PRODUCTION,
    ModelVersion,
    aliased_conflict,
    check_alias,
    check_name,
    nothing_to_roll_back,
    read_run_metrics,
    require_dir,
    resolve_ref,
    unknown_name,
    version_of,
)
from tuneforge.utils.fs import atomic_write_json, storage_errors

__all__ = ["LocalRegistry", "local_registry", "os_user"]

INDEX = "index.json"
_STAGE_MAX_AGE_S = 3600.0


def os_user() -> str:
    """Who changes the offline registry: the OS user."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return str(os.getuid())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def copy_run(src: Path, dest: Path) -> None:
    """Copy a run folder's servable files (not its checkpoints) into ``dest``."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("checkpoints", "checkpoint-*", ".*.partial"),
                    dirs_exist_ok=True)


class LocalRegistry:
    """:class:`~tuneforge.store.registry.base.Registry` on a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    # --- reading ------------------------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def _load(self, name: str) -> dict[str, Any]:
        path = self._dir(name) / INDEX
        try:
            index: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise unknown_name(name, self.names()) from None
        except (OSError, ValueError) as e:
            raise StorageError(f"The registry index {path} cannot be read ({e}).",
                               hint="Restore it from a backup; the version folders beside it are intact.") from None
        return index

    def _version(self, name: str, index: dict[str, Any], row: dict[str, Any]) -> ModelVersion:
        base = self._dir(name)
        aliases = tuple(sorted(a for a, v in index["aliases"].items() if v == row["version"]))
        return ModelVersion(name=name, version=row["version"], run_dir=base / row["dir"], aliases=aliases,
                            created_at=datetime.fromisoformat(row["created_at"]), created_by=row["created_by"],
                            metrics=row.get("metrics") or {}, source=row.get("source", ""),
                            train_data=base / row["train_data"] if row.get("train_data") else None,
                            parent=row.get("parent"))

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / INDEX).is_file())

    def versions(self, name: str) -> list[ModelVersion]:
        index = self._load(name)
        return [self._version(name, index, r) for r in index["versions"]]

    def get(self, name: str, ref: str | int | None = None) -> ModelVersion:
        index = self._load(name)
        rows = {r["version"]: r for r in index["versions"]}
        v = resolve_ref(name, ref, sorted(rows), index["aliases"])
        return self._version(name, index, rows[v])

    def history(self, name: str) -> list[dict[str, Any]]:
        return list(self._load(name)["history"])

    def test_data(self, name: str) -> Path | None:
        rel = self._load(name).get("test_data")
        return self._dir(name) / rel if rel else None

    # --- changing -----------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with storage_errors(self.root):
            self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _change(self, name: str, *, create: bool = False) -> Iterator[dict[str, Any]]:
        """The name's index, locked; written back atomically when the block ends without an error."""
        with self._locked():
            try:
                index = self._load(name)
            except NotFoundError:
                if not create:
                    raise
                index = {"name": name, "next_version": 1, "versions": [], "aliases": {}, "previous": {},
                         "test_data": None, "history": []}
            yield index
            atomic_write_json(self._dir(name) / INDEX, index)

    @staticmethod
    def _audit(index: dict[str, Any], *, actor: str, action: str, alias: str | None = None,
               version: int | None = None, previous: int | None = None, reason: str = "",
               metrics: dict[str, Any] | None = None) -> None:
        index["history"].append({"at": _now(), "actor": actor, "action": action, "alias": alias, "version": version,
                                 "previous": previous, "reason": reason, "metrics": metrics or {}})

    @staticmethod
    def _row(index: dict[str, Any], name: str, version: int) -> dict[str, Any]:
        for r in index["versions"]:
            if r["version"] == version:
                return dict(r)
        resolve_ref(name, version, [r["version"] for r in index["versions"]], index["aliases"])  # raises
        raise AssertionError

    def _sweep_stages(self, folder: Path) -> None:
        now = time.time()
        for p in folder.glob(".stage.*.partial"):
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > _STAGE_MAX_AGE_S:
                    shutil.rmtree(p, ignore_errors=True)

    def register(self, name: str, run_dir: Path, *, actor: str, reason: str = "",
                 metrics: dict[str, Any] | None = None, train_data: Path | None = None,
                 parent: int | None = None, source: str | None = None) -> ModelVersion:
        src = require_dir(Path(run_dir).expanduser().resolve())
        metrics = read_run_metrics(src) if metrics is None else metrics
        train = Path(train_data) if train_data is not None else None
        folder = self._dir(name) / "versions"
        with storage_errors(folder):
            folder.mkdir(parents=True, exist_ok=True)
            self._sweep_stages(folder)
            stage = Path(tempfile.mkdtemp(prefix=".stage.", suffix=".partial", dir=folder))
        try:
            with storage_errors(stage):
                copy_run(src, stage / "run")  # slow: outside the lock
                train_name = None
                if train is not None:
                    train_name = "train" + "".join(train.suffixes[-2:])
                    shutil.copyfile(train, stage / train_name)
            with self._change(name, create=True) as index:
                v = int(index["next_version"])
                if parent is not None:
                    self._row(index, name, parent)
                with storage_errors(folder):
                    if (folder / str(v)).exists():  # left by a process killed before it wrote the index
                        shutil.rmtree(folder / str(v))
                    os.replace(stage, folder / str(v))
                row = {"version": v, "dir": f"versions/{v}/run", "created_at": _now(), "created_by": actor,
                       "metrics": metrics, "source": source or str(src), "parent": parent,
                       "train_data": f"versions/{v}/{train_name}" if train_name else None}
                index["versions"].append(row)
                index["next_version"] = v + 1
                self._audit(index, actor=actor, action="register", version=v, reason=reason, metrics=metrics)
                return self._version(name, index, row)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise

    def set_alias(self, name: str, alias: str, version: int, *, actor: str, reason: str = "",
                  metrics: dict[str, Any] | None = None) -> None:
        check_alias(alias)
        version = version_of(name, version)
        with self._change(name) as index:
            row = self._row(index, name, version)
            old = index["aliases"].get(alias)
            if old is not None and old != version:
                index["previous"].setdefault(alias, []).append(old)
            index["aliases"][alias] = version
            self._audit(index, actor=actor, action="set_alias", alias=alias, version=version, previous=old,
                        reason=reason, metrics=row.get("metrics") if metrics is None else metrics)

    def remove_alias(self, name: str, alias: str, *, actor: str, reason: str = "") -> None:
        with self._change(name) as index:
            if alias not in index["aliases"]:
                resolve_ref(name, alias, [r["version"] for r in index["versions"]], index["aliases"])  # raises
            old = index["aliases"].pop(alias)
            index["previous"].setdefault(alias, []).append(old)
            self._audit(index, actor=actor, action="remove_alias", alias=alias, previous=old, reason=reason)

    def rollback(self, name: str, alias: str = PRODUCTION, *, actor: str, reason: str = "") -> ModelVersion:
        with self._change(name) as index:
            existing = {r["version"] for r in index["versions"]}
            stack = [v for v in index["previous"].get(alias, []) if v in existing]  # deleted ones are skipped
            current = index["aliases"].get(alias)
            while stack and stack[-1] == current:
                stack.pop()
            if not stack:
                raise nothing_to_roll_back(name, alias)
            target = stack.pop()
            index["previous"][alias] = stack
            index["aliases"][alias] = target
            row = self._row(index, name, target)
            self._audit(index, actor=actor, action="rollback", alias=alias, version=target, previous=current,
                        reason=reason, metrics=row.get("metrics"))
            return self._version(name, index, row)

    def delete_version(self, name: str, version: int, *, actor: str, reason: str = "") -> None:
        version = version_of(name, version)
        with self._change(name) as index:
            row = self._row(index, name, version)
            using = [a for a, v in index["aliases"].items() if v == version]
            if using:
                raise aliased_conflict(name, version, using)
            folder = self._dir(name) / "versions" / str(version)
            trash = folder.with_name(f".{version}.deleted")
            with storage_errors(folder):
                if folder.exists():
                    os.replace(folder, trash)
            index["versions"] = [r for r in index["versions"] if r["version"] != version]
            self._audit(index, actor=actor, action="delete", version=version, reason=reason,
                        metrics=row.get("metrics"))
        shutil.rmtree(trash, ignore_errors=True)

    def set_test_data(self, name: str, path: Path) -> Path:
        src = Path(path)
        if not src.is_file():
            raise StorageError(f"The test set {src} does not exist.", hint="Give the path of a data file.")
        dest_name = "test" + "".join(src.suffixes[-2:])
        with self._change(name) as index:
            dest = self._dir(name) / dest_name
            with storage_errors(dest):
                fd, tmp = tempfile.mkstemp(prefix=f".{dest_name}.", suffix=".tmp", dir=dest.parent)
                os.close(fd)
                try:
                    shutil.copyfile(src, tmp)
                    os.replace(tmp, dest)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            index["test_data"] = dest_name
            self._audit(index, actor=os_user(), action="set_test_data", reason=str(src))
        return dest


def local_registry(root: Path) -> LocalRegistry:
    """The offline registry in the folder ``root`` (created on the first change)."""
    return LocalRegistry(root)
