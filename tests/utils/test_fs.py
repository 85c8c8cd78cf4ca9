import errno

import pytest

from tuneforge.errors import StorageError
from tuneforge.utils import fs
from tuneforge.utils.fs import atomic_dir, atomic_write_text


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(dest) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(dest, overwrite=True) as tmp:
        (tmp / "new").write_text("new")
        raise RuntimeError("boom")
    assert (dest / "old").read_text() == "old"  # the old version survives a failed rewrite
    with atomic_dir(dest, overwrite=True) as tmp:
        (tmp / "new").write_text("new")
    assert [p.name for p in dest.iterdir()] == ["new"]


def test_disk_full_becomes_a_clear_storage_error(tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fs.os, "fsync", full)
    target = tmp_path / "f.txt"
    with pytest.raises(StorageError, match="No space left"):
        atomic_write_text(target, "data")
    assert not target.exists() and list(tmp_path.iterdir()) == []
