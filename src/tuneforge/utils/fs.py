"""Write-then-rename helpers: a reader never sees a half-written file or folder."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tuneforge.errors import StorageError

__all__ = ["atomic_dir", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "remove_abandoned_dirs",
           "storage_errors", "write_jsonl"]


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn OS errors from writing ``path`` into a :class:`StorageError` that says what to do."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise StorageError(f"No space left on the device while writing {path}.",
                               hint="Free some disk space (or choose another --output) and run the command again; "
                                    "nothing half-written was kept.") from e
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StorageError(f"Cannot write {path}: {e.strerror}.",
                               hint="Choose a folder you can write to.") from e
        raise StorageError(f"Writing {path} failed: {e}") from e


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    p = Path(path)
    with storage_errors(p):
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write rows as JSON Lines (UTF-8, one object per line), atomically."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def remove_abandoned_dirs(path: str | os.PathLike[str], *, older_than_s: float = 3600.0) -> None:
    """Remove the temporary folders :func:`atomic_dir` left beside ``path`` when its process was killed (it removes
    them itself on an exception). Only those older than ``older_than_s``: a younger one may be another process's
    build in progress."""
    p = Path(path)
    now = time.time()
    for tmp in p.parent.glob(f".{p.name}.*.partial"):
        try:
            if tmp.is_dir() and now - tmp.stat().st_mtime > older_than_s:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it is renamed to ``path``, on failure removed.

    With ``overwrite`` an existing ``path`` is replaced only after the new folder is complete.
    """
    p = Path(path)
    with storage_errors(p):
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".partial", dir=p.parent))
    try:
        yield tmp
        with storage_errors(p):
            if p.exists():
                if not overwrite:
                    raise FileExistsError(errno.EEXIST, "exists", str(p))
                old = p.with_name(f".{p.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(p, old)
                os.replace(tmp, p)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
