"""The offline registry: versions, aliases, rollback, delete refused while aliased, history, two processes."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from tuneforge import runs
from tuneforge.errors import ConflictError, InvalidRequestError, NotFoundError, RunError
from tuneforge.store.registry import local_registry, parse_model_ref


def fake_run(folder: Path, *, accuracy: float, train: Path | None = None) -> Path:
    """A folder with what the registry reads of a run: the manifest, a dev report and a weights file."""
    folder.mkdir(parents=True)
    manifest = {"format_version": 1, "task": "classification", "metrics": {"dev": {"accuracy": accuracy}},
                "data": {"train": {"path": str(train) if train else "/nowhere/train.jsonl"}}}
    (folder / runs.MANIFEST).write_text(json.dumps(manifest))
    (folder / "model.safetensors").write_bytes(b"w" + str(accuracy).encode())
    (folder / "eval-dev").mkdir()
    (folder / "eval-dev" / "metrics.json").write_text(json.dumps({"accuracy": accuracy, "per_class": {"a": 1}}))
    (folder / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    return folder


def test_parse_model_ref():
    assert parse_model_ref("sst@production") == ("sst", "production")
    assert parse_model_ref("sst@3") == ("sst", "3")
    assert parse_model_ref("sst") == ("sst", None)
    with pytest.raises(InvalidRequestError):
        parse_model_ref("sst@")


def test_versions_aliases_rollback_history(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "a", "label": "x"}\n')
    reg = local_registry(tmp_path / "reg")
    v1 = reg.register("sst", fake_run(tmp_path / "r1", accuracy=0.7), actor="ana", reason="first",
                      train_data=train)
    assert (v1.version, v1.aliases, v1.created_by) == (1, (), "ana")
    assert v1.metrics == {"eval-dev": {"accuracy": 0.7}}  # the reports' scalars
    assert (v1.run_dir / "model.safetensors").read_bytes() == b"w0.7"
    assert not (v1.run_dir / "checkpoints").exists()  # only what serving needs is copied
    assert v1.train_data is not None and v1.train_data.read_text() == train.read_text()
    v2 = reg.register("sst", fake_run(tmp_path / "r2", accuracy=0.8), actor="ana", parent=1,
                      source="retrain of sst@1")
    assert v2.version == 2 and v2.parent == 1 and v2.train_data is None and v2.source == "retrain of sst@1"
    assert v1.source == str((tmp_path / "r1").resolve())

    with pytest.raises(NotFoundError, match="no alias 'production'"):
        reg.get("sst")
    reg.set_alias("sst", "production", 1, actor="ana")
    reg.set_alias("sst", "production", 2, actor="bo", reason="better")
    reg.set_alias("sst", "candidate", 2, actor="bo")
    assert reg.get("sst").version == 2 and reg.get("sst", "1").version == 1 and reg.get("sst", 1).version == 1
    assert reg.get("sst", "latest").version == 2
    assert reg.get("sst", "production").aliases == ("candidate", "production")
    with pytest.raises(NotFoundError, match="versions: 1, 2"):
        reg.get("sst", 9)
    with pytest.raises(NotFoundError, match="No model named 'other'"):
        reg.versions("other")

    back = reg.rollback("sst", actor="cy", reason="regression")
    assert back.version == 1 and reg.get("sst").version == 1
    with pytest.raises(InvalidRequestError, match="nothing|no earlier"):
        reg.rollback("sst", actor="cy")

    with pytest.raises(ConflictError, match="production"):
        reg.delete_version("sst", 1, actor="cy")
    reg.remove_alias("sst", "candidate", actor="cy")
    reg.delete_version("sst", 2, actor="cy", reason="bad")
    assert [v.version for v in reg.versions("sst")] == [1]
    assert not v2.run_dir.exists()
    v3 = reg.register("sst", fake_run(tmp_path / "r3", accuracy=0.9), actor="ana")
    assert v3.version == 3  # numbers are never reused

    actions = [(h["action"], h["actor"], h["alias"], h["version"], h["previous"]) for h in reg.history("sst")]
    assert actions == [("register", "ana", None, 1, None), ("register", "ana", None, 2, None),
                       ("set_alias", "ana", "production", 1, None), ("set_alias", "bo", "production", 2, 1),
                       ("set_alias", "bo", "candidate", 2, None), ("rollback", "cy", "production", 1, 2),
                       ("remove_alias", "cy", "candidate", None, 2), ("delete", "cy", None, 2, None),
                       ("register", "ana", None, 3, None)]
    moved = reg.history("sst")[3]
    assert moved["reason"] == "better" and moved["metrics"]["eval-dev"]["accuracy"] == 0.8 and moved["at"]
    assert reg.names() == ["sst"]


def test_bad_inputs_are_refused(tmp_path):
    reg = local_registry(tmp_path / "reg")
    with pytest.raises(RunError, match="not a folder"):
        reg.register("sst", tmp_path / "missing", actor="a")
    v = reg.register("sst", fake_run(tmp_path / "r1", accuracy=0.5), actor="a")
    for bad in ("latest", "3", "a b"):
        with pytest.raises(InvalidRequestError):
            reg.set_alias("sst", bad, v.version, actor="a")
    with pytest.raises(InvalidRequestError):
        reg.register("../x", tmp_path / "r1", actor="a")


def test_test_data_is_kept(tmp_path):
    reg = local_registry(tmp_path / "reg")
    reg.register("sst", fake_run(tmp_path / "r1", accuracy=0.5), actor="a")
    assert reg.test_data("sst") is None
    src = tmp_path / "test.jsonl"
    src.write_text('{"text": "t", "label": "x"}\n')
    kept = reg.set_test_data("sst", src)
    src.unlink()
    assert reg.test_data("sst") == kept and kept.read_text().startswith('{"text"')


def _register_many(root: str, run: str, n: int) -> None:
    reg = local_registry(Path(root))
    for _ in range(n):
        v = reg.register("sst", Path(run), actor="p")
        reg.set_alias("sst", "production", v.version, actor="p")


def test_two_processes_register_at_once(tmp_path):
    run = fake_run(tmp_path / "r", accuracy=0.5)
    ctx = multiprocessing.get_context("fork")  # the children only copy files and write JSON
    procs = [ctx.Process(target=_register_many, args=(str(tmp_path / "reg"), str(run), 4)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    reg = local_registry(tmp_path / "reg")
    assert [v.version for v in reg.versions("sst")] == list(range(1, 9))
    assert all((v.run_dir / runs.MANIFEST).is_file() for v in reg.versions("sst"))
    assert len(reg.history("sst")) == 16
    assert not list((tmp_path / "reg" / "sst" / "versions").glob(".stage.*"))


def test_the_service_registry_is_tenant_scoped(sessions, tmp_path):
    from tuneforge.store.registry import db_registry
    from tuneforge.store.storage import LocalStorage
    from tuneforge.store.tenants import create_tenant, ensure_plans

    storage = LocalStorage(tmp_path / "artifacts")
    with sessions() as s:
        ensure_plans(s)
        a = create_tenant(s, name="acme", plan="pro")[0].id
        b = create_tenant(s, name="other", plan="pro")[0].id
        s.commit()
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "a", "label": "x"}\n')
    with sessions() as s:
        reg = db_registry(s, a, storage)
        v1 = reg.register("sst", fake_run(tmp_path / "r1", accuracy=0.6), actor="key-1", train_data=train)
        v2 = reg.register("sst", fake_run(tmp_path / "r2", accuracy=0.9), actor="key-1", parent=1)
        assert (v1.version, v2.version, v2.parent) == (1, 2, 1)
        assert (v2.run_dir / "model.safetensors").read_bytes() == b"w0.9" and v1.train_data is not None
        reg.set_alias("sst", "production", 1, actor="key-1")
        reg.set_alias("sst", "production", 2, actor="key-2", reason="better")
        assert reg.get("sst").version == 2 and reg.get("sst", "1").aliases == ()
        with pytest.raises(ConflictError):
            reg.delete_version("sst", 2, actor="key-2")
        assert reg.rollback("sst", actor="key-2").version == 1
        with pytest.raises(InvalidRequestError):
            reg.rollback("sst", actor="key-2")
        reg.delete_version("sst", 2, actor="key-2")
        assert not v2.run_dir.exists()
        assert reg.register("sst", tmp_path / "r2", actor="key-1").version == 3
        assert [h["action"] for h in reg.history("sst")] == ["register", "register", "set_alias", "set_alias",
                                                             "rollback", "delete", "register"]
        kept = reg.set_test_data("sst", train)
        assert reg.test_data("sst") == kept and kept.read_text() == train.read_text()
    with sessions() as s:
        other = db_registry(s, b, storage)
        assert other.names() == []
        with pytest.raises(NotFoundError):
            other.get("sst", 1)
        other.register("sst", tmp_path / "r1", actor="b")  # the same name in another tenant is its own
        assert [v.version for v in other.versions("sst")] == [1]
        assert [v.version for v in db_registry(s, a, storage).versions("sst")] == [1, 3]


def test_a_version_folder_left_by_a_killed_process_is_replaced(tmp_path):
    reg = local_registry(tmp_path / "reg")
    reg.register("sst", fake_run(tmp_path / "r1", accuracy=0.5), actor="a")
    orphan = tmp_path / "reg" / "sst" / "versions" / "2" / "run"
    orphan.mkdir(parents=True)
    (orphan / "half.bin").write_bytes(b"x")  # copied, renamed, then killed before the index was written
    v2 = reg.register("sst", fake_run(tmp_path / "r2", accuracy=0.6), actor="a")
    assert v2.version == 2 and not (v2.run_dir / "half.bin").exists()
    assert (v2.run_dir / "model.safetensors").read_bytes() == b"w0.6"


def test_concurrent_service_registrations_get_distinct_numbers(sessions, tmp_path):
    import threading

    from tuneforge.store.registry import db_registry
    from tuneforge.store.storage import LocalStorage
    from tuneforge.store.tenants import create_tenant, ensure_plans

    storage = LocalStorage(tmp_path / "artifacts")
    with sessions() as s:
        ensure_plans(s)
        tenant = create_tenant(s, name="acme", plan="pro")[0].id
        s.commit()
    run = fake_run(tmp_path / "r", accuracy=0.5)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with sessions() as s:
                for _ in range(3):
                    db_registry(s, tenant, storage).register("sst", run, actor="t")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with sessions() as s:
        versions = db_registry(s, tenant, storage).versions("sst")
    assert [v.version for v in versions] == [1, 2, 3, 4, 5, 6]
    assert len({v.run_dir for v in versions}) == 6 and all(v.run_dir.is_dir() for v in versions)


def test_the_ref_cache_forgets_a_name_when_it_changes():
    from tuneforge.store.registry.cache import RefCache

    cache, calls = RefCache(ttl_s=3600), []

    def load(value):
        calls.append(value)
        return value

    assert cache.get("t1", "sst", "", lambda: load(1)) == 1
    assert cache.get("t1", "sst", "", lambda: load(2)) == 1  # cached
    assert cache.get("t2", "sst", "", lambda: load(3)) == 3  # per tenant
    cache.invalidate("t1", "sst")
    assert cache.get("t1", "sst", "", lambda: load(4)) == 4 and cache.get("t2", "sst", "", lambda: load(5)) == 3

    def changed_while_loading():  # a value read before a change is not kept after it
        cache.invalidate("t1", "sst")
        return load(6)

    cache.invalidate("t1", "sst")
    assert cache.get("t1", "sst", "", changed_while_loading) == 6
    assert cache.get("t1", "sst", "", lambda: load(7)) == 7
    assert calls == [1, 3, 4, 6, 7]
