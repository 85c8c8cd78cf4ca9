"""Artifact storage: uploaded files and trained model folders, behind a small interface.

``LocalStorage`` keeps them under one folder with atomic writes; ``S3Storage`` (:mod:`tuneforge.store.s3`) keeps
them in an S3-compatible bucket without touching their callers. :func:`open_storage` picks one from the
``storage_url`` setting (``file:///path`` or ``s3://bucket/prefix``). Keys are relative POSIX paths chosen by the
service (``files/<tenant>/<id>.jsonl``, ``models/<tenant>/<job>``), never by a client.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from tuneforge.errors import ConfigError, StorageError
from tuneforge.utils.fs import storage_errors

if TYPE_CHECKING:
    from tuneforge.settings import Settings

__all__ = ["LocalStorage", "Storage", "StoredObject", "check_key", "open_storage", "register_storage_scheme",
           "remove_orphans", "storage_from_url"]

_CHUNK = 1024 * 1024


class StoredObject:
    """What ``put_stream`` wrote: its size and SHA-256."""

    def __init__(self, key: str, size: int, sha256: str) -> None:
        self.key, self.size, self.sha256 = key, size, sha256


def check_key(key: str) -> PurePosixPath:
    """``key`` as a relative POSIX path, or a :class:`StorageError` if it could leave the storage's root."""
    parts = PurePosixPath(key).parts
    if not parts or key.startswith("/") or any(p in ("..", ".", "") for p in parts):
        raise StorageError(f"invalid storage key {key!r}")
    return PurePosixPath(*parts)


def remove_orphans(root: Path, older_than: float) -> list[Path]:
    """Delete what writers that crashed left under ``root``: ``.<name>.<random>.tmp`` files and
    ``.<name>.partial`` / ``.<name>.deleted`` folders untouched for ``older_than`` seconds, at most a few folders
    deep (model folders are not searched). Returns what was removed."""
    limit = time.time() - older_than
    removed: list[Path] = []
    base = len(root.parts)
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        for name in [*names, *dirs]:
            if not name.startswith(".") or not name.endswith((".tmp", ".partial", ".deleted")):
                continue
            p = here / name
            try:
                if p.lstat().st_mtime > limit:
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            except OSError:
                continue  # gone already, or not ours to remove: never fail because of a leftover
            removed.append(p)
        dirs[:] = [d for d in dirs if not d.startswith(".") and len(here.parts) - base < 3]
    return removed


class Storage(Protocol):
    """Where artifacts live. Implementations must make ``put_stream`` and ``put_dir`` all-or-nothing."""

    def put_stream(self, key: str, stream: BinaryIO, *, max_bytes: int | None = None) -> StoredObject:
        """Store a file read from ``stream``; raise ``OverflowError`` past ``max_bytes`` (nothing is kept)."""
        ...

    def open(self, key: str) -> BinaryIO: ...

    def iter_bytes(self, key: str) -> Iterator[bytes]: ...

    def local_path(self, key: str) -> Path:
        """A local path holding the object (a file or a folder), for code that reads files by path; a remote
        storage downloads it into a local cache first and checks it against what was stored. Nothing stored at
        ``key`` gives a path that does not exist."""
        ...

    def put_dir(self, key: str, folder: Path) -> int:
        """Store a finished folder under ``key`` (moved, not copied, where possible); returns its size."""
        ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


class LocalStorage:
    """Artifacts as files under ``root``; writes go to a temporary name and are renamed into place."""

    #: a temporary name untouched for this long was left by a writer that crashed (a live one keeps writing)
    ORPHAN_SECONDS = 3600.0

    def __init__(self, root: Path, *, sweep: bool = True) -> None:
        self.root = Path(root)
        if sweep:
            self.remove_orphans()

    def remove_orphans(self, older_than: float | None = None) -> list[Path]:
        """Delete what writers that crashed left behind: ``.<name>.<random>.tmp`` files of ``put_stream`` and
        ``.<name>.partial`` / ``.<name>.deleted`` folders of ``put_dir`` / ``delete``, untouched for
        ``older_than`` seconds (default :attr:`ORPHAN_SECONDS`). Keys are at most a few folders deep; model
        folders are not searched. Returns what was removed."""
        return remove_orphans(self.root, self.ORPHAN_SECONDS if older_than is None else older_than)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).parts)

    def put_stream(self, key: str, stream: BinaryIO, *, max_bytes: int | None = None) -> StoredObject:
        dest = self._path(key)
        with storage_errors(dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        digest, size = hashlib.sha256(), 0
        try:
            with storage_errors(dest), os.fdopen(fd, "wb") as f:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise OverflowError(size)
                    digest.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            with storage_errors(dest):
                os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredObject(key, size, digest.hexdigest())

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        with self.open(key) as f:
            while chunk := f.read(_CHUNK):
                yield chunk

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def put_dir(self, key: str, folder: Path) -> int:
        dest = self._path(key)
        size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        with storage_errors(dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            try:
                os.replace(folder, dest)  # same file system: atomic
            except OSError:
                staging = dest.with_name(f".{dest.name}.partial")
                shutil.rmtree(staging, ignore_errors=True)
                shutil.copytree(folder, staging)
                os.replace(staging, dest)
                shutil.rmtree(folder, ignore_errors=True)
        return size

    def delete(self, key: str) -> None:
        p = self._path(key)
        with storage_errors(p):
            if p.is_dir():
                # rename first so that a reader never sees half a model folder
                trash = p.with_name(f".{p.name}.deleted")
                os.replace(p, trash)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()


#: URL scheme -> what builds the storage for such a URL from ``(url, data_dir)``; ``s3`` registers itself
#: (:mod:`tuneforge.store.s3`, imported by the package)
_SCHEMES: dict[str, Callable[[str, Path], Storage]] = {}


def register_storage_scheme(scheme: str, factory: Callable[[str, Path], Storage]) -> None:
    """Make ``storage_from_url`` build ``factory(url, data_dir)`` for URLs of ``scheme``."""
    _SCHEMES[scheme] = factory


def storage_from_url(url: str | None, *, data_dir: Path) -> Storage:
    """The storage behind ``url``: ``file:///path`` (a folder; ``None`` means ``<data_dir>/artifacts``) or
    ``s3://bucket/prefix`` (any S3-compatible store, configured by the standard ``AWS_*`` variables; downloads are
    cached under ``<data_dir>/storage-cache``)."""
    if not url:
        return LocalStorage(Path(data_dir) / "artifacts")
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"storage_url: {url!r} is not an absolute file URL",
                              hint="Write a local folder as file:///absolute/path (three slashes).")
        return LocalStorage(Path(unquote(parts.path)))
    if parts.scheme in _SCHEMES:
        return _SCHEMES[parts.scheme](url, Path(data_dir))
    raise ConfigError(f"storage_url: {url!r} is neither a file:// nor an s3:// URL",
                      hint="Use file:///path/to/folder (the default: <data_dir>/artifacts) or s3://bucket/prefix "
                           "(AWS S3, MinIO, Ceph; endpoint and credentials from AWS_ENDPOINT_URL, "
                           "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION).")


def open_storage(settings: Settings) -> Storage:
    """The artifact storage the service, its workers and the CLI use: ``settings.storage_url``, by default
    ``<data_dir>/artifacts``."""
    return storage_from_url(settings.storage_url, data_dir=settings.data_dir)
