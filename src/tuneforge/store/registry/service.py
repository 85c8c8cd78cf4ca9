"""The service's registry: one per tenant, in the database (:mod:`.tables`), its version folders in artifact
storage under ``registry/<tenant>/<name>/<id>``.

Same :class:`~tuneforge.store.registry.base.Registry` protocol as the offline folder. A version's files are
stored first (outside the transaction: copying can be slow) and its row committed after; a failure between the
two leaves at worst an unreferenced folder, never a row without its files. The version number is taken from the
name's row in the same transaction that inserts the version, under a row lock (``BEGIN IMMEDIATE`` on SQLite),
so two registrations never get the same number.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneforge.errors import StorageError
from tuneforge.store.db import utcnow
from tuneforge.store.ids import new_id
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
from tuneforge.store.registry.local import copy_run
from tuneforge.store.registry.tables import RegistryAlias, RegistryEvent, RegistryName, RegistryVersion
from tuneforge.store.repositories import TenantRepo
from tuneforge.store.storage import Storage

__all__ = ["DbRegistry", "db_registry"]


class _Names(TenantRepo[RegistryName]):
    model = RegistryName
    noun = "registry name"
    param = "name"


class DbRegistry:
    """:class:`~tuneforge.store.registry.base.Registry` of one tenant, in the service's database."""

    def __init__(self, session: Session, tenant_id: str, storage: Storage) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.storage = storage
        self._repo = _Names(session, tenant_id)

    # --- reading ------------------------------------------------------------------------------------------------

    def _select(self, table: type[Any]) -> Any:
        """This tenant's rows of ``table``, re-read from the database: the service's sessions keep objects past
        a commit (``expire_on_commit=False``), and another process may have changed them since."""
        return self._repo.select(of=table).execution_options(populate_existing=True)

    def _find(self, name: str, *, for_update: bool = False) -> RegistryName | None:
        q = self._select(RegistryName).where(RegistryName.name == check_name(name))
        return self.session.scalar(q.with_for_update() if for_update else q)

    def _name(self, name: str, *, for_update: bool = False) -> RegistryName:
        row = self._find(name, for_update=for_update)
        if row is None:
            raise unknown_name(name, self.names())
        return row

    def _rows(self, row: RegistryName) -> list[RegistryVersion]:
        return list(self.session.scalars(self._select(RegistryVersion)
                                         .where(RegistryVersion.name_id == row.id).order_by(RegistryVersion.version)))

    def _aliases(self, row: RegistryName) -> list[RegistryAlias]:
        return list(self.session.scalars(self._select(RegistryAlias).where(RegistryAlias.name_id == row.id)))

    @staticmethod
    def _targets(aliases: list[RegistryAlias]) -> dict[str, int]:
        return {a.alias: a.version for a in aliases if a.version is not None}

    def _public(self, name: str, v: RegistryVersion, targets: dict[str, int]) -> ModelVersion:
        return ModelVersion(name=name, version=v.version, run_dir=self.storage.local_path(v.storage_key),
                            aliases=tuple(sorted(a for a, t in targets.items() if t == v.version)),
                            created_at=v.created_at, created_by=v.created_by, metrics=dict(v.metrics or {}),
                            source=v.source,
                            train_data=self.storage.local_path(v.train_data_key) if v.train_data_key else None,
                            parent=v.parent)

    def exists(self, name: str) -> bool:
        """Whether this tenant has a registry name ``name``."""
        return self._find(name) is not None

    def names(self) -> list[str]:
        return list(self.session.scalars(self._repo.select(RegistryName.name).order_by(RegistryName.name)))

    def versions(self, name: str) -> list[ModelVersion]:
        row = self._name(name)
        targets = self._targets(self._aliases(row))
        return [self._public(row.name, v, targets) for v in self._rows(row)]

    def get(self, name: str, ref: str | int | None = None) -> ModelVersion:
        row = self._name(name)
        targets = self._targets(self._aliases(row))
        versions = {v.version: v for v in self._rows(row)}
        n = resolve_ref(row.name, ref, sorted(versions), targets)
        return self._public(row.name, versions[n], targets)

    def history(self, name: str) -> list[dict[str, Any]]:
        row = self._name(name)
        events = self.session.scalars(self._select(RegistryEvent).where(RegistryEvent.name_id == row.id)
                                      .order_by(RegistryEvent.id))
        return [{"at": e.created_at.isoformat(timespec="seconds"), "actor": e.actor, "action": e.action,
                 "alias": e.alias, "version": e.version, "previous": e.previous, "reason": e.reason,
                 "metrics": e.metrics or {}} for e in events]

    def test_data(self, name: str) -> Path | None:
        row = self._name(name)
        return self.storage.local_path(row.test_data_key) if row.test_data_key else None

    def bytes_used(self) -> int:
        """What this tenant's versions take in storage."""
        return int(self.session.scalar(self._repo.select(func.coalesce(func.sum(RegistryVersion.bytes), 0),
                                                         of=RegistryVersion)) or 0)

    # --- changing -----------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            yield
            self.session.commit()
        except BaseException:
            self.session.rollback()
            raise

    def _audit(self, row: RegistryName, *, actor: str, action: str, alias: str | None = None,
               version: int | None = None, previous: int | None = None, reason: str = "",
               metrics: dict[str, Any] | None = None) -> None:
        self.session.add(RegistryEvent(tenant_id=self.tenant_id, name_id=row.id, action=action, alias=alias,
                                       version=version, previous=previous, actor=actor[:255], reason=reason,
                                       metrics=metrics or {}, created_at=utcnow()))

    def _version_row(self, row: RegistryName, version: int) -> RegistryVersion:
        v = self.session.scalar(self._select(RegistryVersion).where(RegistryVersion.name_id == row.id,
                                                                    RegistryVersion.version == version))
        if v is None:
            resolve_ref(row.name, version, [r.version for r in self._rows(row)], {})  # raises, naming the choices
        assert v is not None
        return v

    def _name_for_change(self, name: str, *, create: bool) -> RegistryName:
        row = self._find(name, for_update=True)
        if row is not None or not create:
            return row if row is not None else self._name(name)
        row = RegistryName(id=new_id("regname"), tenant_id=self.tenant_id, name=name, next_version=1,
                           created_at=utcnow())
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:  # created by a concurrent registration a moment ago
            return self._name(name, for_update=True)
        return row

    def _store_files(self, key: str, src: Path, train: Path | None) -> tuple[int, str | None]:
        dest = self.storage.local_path(key)
        with contextlib.ExitStack() as undo:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
            except OSError as e:
                raise StorageError(f"Cannot write the registry's copy under {dest.parent}: {e}") from e
            undo.callback(shutil.rmtree, stage, ignore_errors=True)
            try:
                copy_run(src, stage / "run")
            except OSError as e:
                raise StorageError(f"Copying {src} into the registry failed: {e}") from e
            size = self.storage.put_dir(key, stage / "run")
        train_key = None
        if train is not None:
            train_key = f"{key}.train{''.join(train.suffixes[-2:])}"
            with open(train, "rb") as f:
                size += self.storage.put_stream(train_key, f).size
        return size, train_key

    def register(self, name: str, run_dir: Path, *, actor: str, reason: str = "",
                 metrics: dict[str, Any] | None = None, train_data: Path | None = None,
                 parent: int | None = None, source: str | None = None) -> ModelVersion:
        check_name(name)
        src = require_dir(Path(run_dir))
        metrics = read_run_metrics(src) if metrics is None else metrics
        train = Path(train_data) if train_data is not None else None
        self.session.rollback()  # no transaction open during the copy
        key = f"registry/{self.tenant_id}/{name}/{new_id('ver')}"
        size, train_key = self._store_files(key, src, train)
        try:
            with self._transaction():
                row = self._name_for_change(name, create=True)
                if parent is not None:
                    self._version_row(row, parent)
                n = row.next_version
                row.next_version = n + 1
                v = RegistryVersion(id=new_id("regver"), tenant_id=self.tenant_id, name_id=row.id, version=n,
                                    storage_key=key, train_data_key=train_key, bytes=size, metrics=metrics,
                                    source=(source or str(src))[:255], parent=parent, created_by=actor[:255],
                                    created_at=utcnow())
                self.session.add(v)
                self._audit(row, actor=actor, action="register", version=n, reason=reason, metrics=metrics)
                public = self._public(name, v, self._targets(self._aliases(row)))
        except BaseException:
            for k in (key, train_key):
                if k:
                    with contextlib.suppress(Exception):
                        self.storage.delete(k)
            raise
        return public

    def _alias_row(self, row: RegistryName, alias: str) -> RegistryAlias | None:
        return self.session.scalar(self._select(RegistryAlias).where(RegistryAlias.name_id == row.id,
                                                                     RegistryAlias.alias == alias))

    def set_alias(self, name: str, alias: str, version: int, *, actor: str, reason: str = "",
                  metrics: dict[str, Any] | None = None) -> None:
        check_alias(alias)
        version = version_of(name, version)
        with self._transaction():
            row = self._name_for_change(name, create=False)
            v = self._version_row(row, version)
            a = self._alias_row(row, alias)
            old = a.version if a is not None else None
            if a is None:
                a = RegistryAlias(tenant_id=self.tenant_id, name_id=row.id, alias=alias, previous=[])
                self.session.add(a)
            elif old is not None and old != version:
                a.previous = [*a.previous, old]
            a.version, a.updated_at = version, utcnow()
            self._audit(row, actor=actor, action="set_alias", alias=alias, version=version, previous=old,
                        reason=reason, metrics=dict(v.metrics or {}) if metrics is None else metrics)

    def remove_alias(self, name: str, alias: str, *, actor: str, reason: str = "") -> None:
        with self._transaction():
            row = self._name_for_change(name, create=False)
            a = self._alias_row(row, alias)
            if a is None or a.version is None:
                resolve_ref(row.name, alias, [r.version for r in self._rows(row)],
                            self._targets(self._aliases(row)))  # raises
            assert a is not None and a.version is not None
            old = a.version
            a.previous, a.version, a.updated_at = [*a.previous, old], None, utcnow()
            self._audit(row, actor=actor, action="remove_alias", alias=alias, previous=old, reason=reason)

    def rollback(self, name: str, alias: str = PRODUCTION, *, actor: str, reason: str = "") -> ModelVersion:
        with self._transaction():
            row = self._name_for_change(name, create=False)
            a = self._alias_row(row, alias)
            existing = {v.version: v for v in self._rows(row)}
            current = a.version if a is not None else None
            stack = [v for v in (a.previous if a is not None else []) if v in existing]
            while stack and stack[-1] == current:
                stack.pop()
            if a is None or not stack:
                raise nothing_to_roll_back(row.name, alias)
            target = stack.pop()
            a.previous, a.version, a.updated_at = stack, target, utcnow()
            self._audit(row, actor=actor, action="rollback", alias=alias, version=target, previous=current,
                        reason=reason, metrics=dict(existing[target].metrics or {}))
            public = self._public(row.name, existing[target], self._targets(self._aliases(row)))
        return public

    def delete_version(self, name: str, version: int, *, actor: str, reason: str = "") -> None:
        version = version_of(name, version)
        with self._transaction():
            row = self._name_for_change(name, create=False)
            v = self._version_row(row, version)
            using = [a for a, t in self._targets(self._aliases(row)).items() if t == version]
            if using:
                raise aliased_conflict(row.name, version, using)
            keys = [k for k in (v.storage_key, v.train_data_key) if k]
            self.session.delete(v)
            self._audit(row, actor=actor, action="delete", version=version, reason=reason,
                        metrics=dict(v.metrics or {}))
        for k in keys:
            self.storage.delete(k)

    def set_test_data(self, name: str, path: Path, *, actor: str = "") -> Path:
        src = Path(path)
        row = self._name(name)
        key = f"registry/{self.tenant_id}/{row.name}/test{''.join(src.suffixes[-2:])}"
        self.session.rollback()
        with open(src, "rb") as f:
            self.storage.put_stream(key, f)
        with self._transaction():
            row = self._name_for_change(name, create=False)
            row.test_data_key = key
            self._audit(row, actor=actor, action="set_test_data", reason=src.name)
        return self.storage.local_path(key)


def db_registry(session: Session, tenant_id: str, storage: Storage) -> DbRegistry:
    """The registry of one tenant: another tenant's names are not found, like missing ones."""
    return DbRegistry(session, tenant_id, storage)
