"""Issue 17, item 10: what a writer that crashed left in artifact storage (a ``.tmp`` of ``put_stream``, a
``.partial`` copy of ``put_dir``, a ``.deleted`` folder) is removed when storage opens; what a live writer is
writing right now is left alone."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from tuneforge.errors import StorageError
from tuneforge.store.storage import LocalStorage


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_orphans_of_a_crash_are_removed_at_startup_and_live_writes_kept(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    storage = LocalStorage(root)
    storage.put_stream("files/t1/file-a.jsonl", io.BytesIO(b"{}\n"))
    (root / "models" / "t1" / "ftjob-1").mkdir(parents=True)
    (root / "models" / "t1" / "ftjob-1" / "model.safetensors").write_bytes(b"w")
    # what a crash leaves: a half-written upload, a half-copied model folder, a folder being deleted
    tmp = root / "files" / "t1" / ".file-b.jsonl.x1y2z3.tmp"
    tmp.write_bytes(b"half")
    partial = root / "models" / "t1" / ".ftjob-2.partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    deleted = root / "solutions" / "recommender" / "t1" / ".rec-1.deleted"
    deleted.mkdir(parents=True)
    live = root / "files" / "t1" / ".file-c.jsonl.a1b2c3.tmp"  # a writer in another process, still writing
    live.write_bytes(b"in progress")
    for p in (tmp, partial, deleted):
        _age(p, 2 * LocalStorage.ORPHAN_SECONDS)

    LocalStorage(root)  # the server (or a worker) starting

    assert not tmp.exists() and not partial.exists() and not deleted.exists()
    assert live.exists()
    assert (root / "files" / "t1" / "file-a.jsonl").read_bytes() == b"{}\n"
    assert (root / "models" / "t1" / "ftjob-1" / "model.safetensors").exists()
    # and on demand, with another age
    assert LocalStorage(root, sweep=False).remove_orphans(older_than=0) == [live]


def test_a_failed_write_leaves_no_tmp(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)

    class Broken(io.BytesIO):
        def read(self, n: int = -1) -> bytes:
            if self.tell() > 10:
                raise OSError("connection reset")
            return super().read(5)

    with pytest.raises((OSError, StorageError)):
        storage.put_stream("files/t/f.jsonl", Broken(b"x" * 100))
    assert [p.name for p in (tmp_path / "files" / "t").iterdir()] == []
