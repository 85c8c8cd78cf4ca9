"""Artifact storage writes atomically; repositories scope every query by tenant; the usage ledger adds up."""

from __future__ import annotations

import io
import threading

import pytest
from sqlalchemy import func

from tuneforge.errors import NotFoundError, StorageError
from tuneforge.store.db import utcnow
from tuneforge.store.models import File, Job
from tuneforge.store.repositories import FileRepo, JobRepo, TenantRepo, UsageRepo
from tuneforge.store.storage import LocalStorage
from tuneforge.store.tables import MonitorItem, MonitorMention
from tuneforge.store.tenants import create_tenant, ensure_plans
from tuneforge.store.usage import UsageMeter, day_start, record_usage


def test_put_stream_is_all_or_nothing(tmp_path):
    st = LocalStorage(tmp_path)
    obj = st.put_stream("files/t1/a.jsonl", io.BytesIO(b"x" * 10), max_bytes=10)
    assert obj.size == 10 and st.local_path("files/t1/a.jsonl").read_bytes() == b"x" * 10
    with pytest.raises(OverflowError):
        st.put_stream("files/t1/b.jsonl", io.BytesIO(b"x" * 11), max_bytes=10)
    assert sorted(p.name for p in (tmp_path / "files" / "t1").iterdir()) == ["a.jsonl"]  # no temp file left


def test_keys_cannot_leave_the_root(tmp_path):
    st = LocalStorage(tmp_path / "root")
    for bad in ("../x", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(StorageError):
            st.local_path(bad)


def test_put_dir_moves_a_finished_folder_into_place(tmp_path):
    st = LocalStorage(tmp_path / "root")
    src = tmp_path / "run"
    src.mkdir()
    (src / "w.bin").write_bytes(b"abc")
    assert st.put_dir("models/t/j", src) == 3
    assert not src.exists() and st.local_path("models/t/j/w.bin").read_bytes() == b"abc"
    st.delete("models/t/j")
    assert not st.exists("models/t/j")


def _two_tenants(s):
    ensure_plans(s)
    a, _, _ = create_tenant(s, name="acme", plan="pro")
    b, _, _ = create_tenant(s, name="globex", plan="pro")
    return a.id, b.id


def test_repositories_never_return_another_tenants_rows(sessions):
    with sessions() as s:
        a, b = _two_tenants(s)
        FileRepo(s, a).add(File(id="file-a", filename="x.jsonl", purpose="fine-tune", bytes=5, sha256="0" * 64,
                                storage_key="files/a/file-a.jsonl", created_at=utcnow()))
        JobRepo(s, a).add(Job(id="ftjob-a", base_model="bert-tiny", task="classification",
                              training_file_id="file-a", seed=1, status="queued", created_at=utcnow(),
                              run_after=utcnow()))
        s.commit()
        assert FileRepo(s, a).get("file-a").id == "file-a"
        with pytest.raises(NotFoundError, match="No such file"):
            FileRepo(s, b).get("file-a")
        with pytest.raises(NotFoundError):
            JobRepo(s, b).get("ftjob-a")
        with pytest.raises(NotFoundError):
            JobRepo(s, b).events("ftjob-a")
        assert FileRepo(s, b).list().data == [] and FileRepo(s, b).bytes_used() == 0
        assert [f.id for f in FileRepo(s, a).list().data] == ["file-a"]
        assert JobRepo(s, a).count_active() == 1 and JobRepo(s, b).count_active() == 0


class _ItemRepo(TenantRepo[MonitorItem]):
    """A repository defined outside the store, as the solutions define theirs."""

    model = MonitorItem
    noun = "item"
    param = "item_id"


def _item(id: str) -> MonitorItem:
    return MonitorItem(id=id, text="t", text_hash=id, lang="en", published_at=utcnow(), label="positive",
                       polarity="pos", score=0.9, created_at=utcnow())


def test_a_tenant_repo_scopes_every_query_and_hides_other_tenants_rows(sessions):
    with sessions() as s:
        a, b = _two_tenants(s)
        _ItemRepo(s, a).add(_item("item-a"))
        _ItemRepo(s, b).add(_item("item-b"))
        s.flush()
        s.add_all([MonitorMention(tenant_id=t, item_id=f"item-{n}", entity="ACME", published_at=utcnow(),
                                  polarity="pos", score=1.0) for t, n in ((a, "a"), (b, "b"), (b, "b"))])
        s.commit()
        mine, theirs = _ItemRepo(s, a), _ItemRepo(s, b)
        assert mine.get("item-a").tenant_id == a and mine.find("item-b") is None
        with pytest.raises(NotFoundError, match="No such item: 'item-b'") as e:
            mine.get("item-b")
        assert e.value.param == "item_id"
        other = theirs.get("item-b")
        with pytest.raises(NotFoundError):
            mine.delete(other)  # an object loaded for another tenant is not this tenant's to delete
        assert [i.id for i in mine.list().data] == ["item-a"]
        # select() filters any columns or aggregate by tenant, also of another tenant-owned table
        assert s.scalar(mine.select(func.count())) == 1
        assert s.scalar(theirs.select(func.count(), of=MonitorMention)) == 2
        assert s.scalar(mine.select(func.count(), of=MonitorMention)) == 1
        assert mine.add(_item("item-c")).tenant_id == a  # add() stamps the tenant


def test_cursor_pagination_walks_every_row_once(sessions):
    with sessions() as s:
        a, _ = _two_tenants(s)
        repo = FileRepo(s, a)
        for i in range(7):
            repo.add(File(id=f"file-{i:02d}", filename="x.jsonl", purpose="fine-tune", bytes=1, sha256="0" * 64,
                          storage_key=f"k{i}", created_at=utcnow()))
        s.commit()
        seen, after = [], None
        while True:
            page = repo.list(after=after, limit=3)
            seen += [f.id for f in page.data]
            if not page.has_more:
                break
            after = page.data[-1].id
        assert sorted(seen) == [f"file-{i:02d}" for i in range(7)] and len(seen) == 7


def test_usage_upserts_add_up_under_concurrency(sessions):
    with sessions() as s:
        a, b = _two_tenants(s)
    meter = UsageMeter(sessions)

    def hammer() -> None:
        for _ in range(50):
            meter.add(a, "requests")
        with sessions() as s2:
            record_usage(s2, tenant_id=a, model="m", kind="predicted_tokens", quantity=3)
            s2.commit()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    meter.flush()
    with sessions() as s:
        usage = UsageRepo(s, a)
        assert usage.total("requests", since=day_start()) == 200
        assert usage.total("predicted_tokens", since=day_start()) == 12
        assert UsageRepo(s, b).total("requests", since=day_start()) == 0
        assert len([r for r in usage.rows() if r.kind == "predicted_tokens"]) == 1  # one bucket per day
