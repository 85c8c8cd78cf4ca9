"""s3:// artifact storage against moto's S3 server on 127.0.0.1 (tests/conftest.py starts it): round trips,
max_bytes, integrity on download, half-uploaded folders, and a whole service job whose model lives in the bucket."""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import pytest

from tests.service_support import jsonl, make_settings, new_tenant, rows
from tuneforge.errors import ConfigError, StorageError
from tuneforge.settings import Settings
from tuneforge.store.storage import LocalStorage, storage_from_url


def _s3(bucket: str, cache: Path, prefix: str = "pre"):
    from tuneforge.store.s3 import S3Storage

    return S3Storage(bucket, prefix, cache_dir=cache)


def _keys(bucket: str) -> list[str]:
    import boto3

    return sorted(o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", []))


def _folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (root / "sub" / "config.json").write_text('{"a": 1}')
    (root / "empty.txt").write_bytes(b"")
    return root


def test_storage_url_picks_the_storage(tmp_path, monkeypatch):
    assert storage_from_url(None, data_dir=tmp_path).root == tmp_path / "artifacts"  # type: ignore[attr-defined]
    local = storage_from_url(f"file://{tmp_path / 'store'}", data_dir=tmp_path)
    assert isinstance(local, LocalStorage) and local.root == tmp_path / "store"
    for bad, says in (("ftp://x/y", "neither a file:// nor an s3://"), ("file://relative/path", "absolute"),
                      ("s3:///prefix", "names no bucket")):
        with pytest.raises(ConfigError, match=says):
            storage_from_url(bad, data_dir=tmp_path)
    monkeypatch.setenv("TUNEFORGE_STORAGE_URL", "s3://bucket/prefix")
    assert Settings(_env_file=None).storage_url == "s3://bucket/prefix"


def test_a_stream_and_a_folder_round_trip(s3_bucket, tmp_path):
    st = _s3(s3_bucket, tmp_path / "cache-a")
    data = b'{"text": "good", "label": "positive"}\n' * 1000
    obj = st.put_stream("files/t1/file-1.jsonl", io.BytesIO(data), max_bytes=len(data))
    assert (obj.size, obj.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    src = _folder(tmp_path / "run")
    assert st.put_dir("models/t1/job-1", src) == 256 * 40 + 8
    assert not src.exists()  # moved into the cache, as LocalStorage moves it
    assert _keys(s3_bucket) == ["pre/files/t1/file-1.jsonl", "pre/models/t1/job-1/.tuneforge-manifest.json",
                                "pre/models/t1/job-1/empty.txt", "pre/models/t1/job-1/model.safetensors",
                                "pre/models/t1/job-1/sub/config.json"]

    other = _s3(s3_bucket, tmp_path / "cache-b")  # another machine: everything comes from the bucket
    assert other.exists("files/t1/file-1.jsonl") and other.exists("models/t1/job-1")
    assert not other.exists("models/t1/job-2")
    path = other.local_path("files/t1/file-1.jsonl")
    assert path.is_relative_to(tmp_path / "cache-b") and path.read_bytes() == data
    assert b"".join(other.iter_bytes("files/t1/file-1.jsonl")) == data
    folder = other.local_path("models/t1/job-1")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "empty.txt", "model.safetensors", "sub/config.json"]
    assert (folder / "model.safetensors").read_bytes() == bytes(range(256)) * 40
    assert not other.local_path("models/t1/job-2").exists()  # nothing stored: a path that does not exist

    other.delete("models/t1/job-1")
    other.delete("files/t1/file-1.jsonl")
    assert _keys(s3_bucket) == [] and not folder.exists() and not path.exists()
    assert not _s3(s3_bucket, tmp_path / "cache-c").exists("models/t1/job-1")


def test_past_max_bytes_nothing_is_kept(s3_bucket, tmp_path):
    st = _s3(s3_bucket, tmp_path / "cache")
    with pytest.raises(OverflowError):
        st.put_stream("files/t1/big.jsonl", io.BytesIO(b"x" * 5000), max_bytes=4096)
    assert _keys(s3_bucket) == [] and not st.exists("files/t1/big.jsonl")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_a_changed_or_corrupted_object_is_refused_on_download(s3_bucket, tmp_path):
    import boto3

    s3 = boto3.client("s3")
    st = _s3(s3_bucket, tmp_path / "cache-a")
    st.put_dir("models/t1/job-1", _folder(tmp_path / "run"))
    obj = st.put_stream("files/t1/f.jsonl", io.BytesIO(b"abcdef"))
    # behind the manifest's back: same name, other bytes (and for the file, even its metadata kept)
    s3.put_object(Bucket=s3_bucket, Key="pre/models/t1/job-1/sub/config.json", Body=b'{"a": 2}')
    s3.put_object(Bucket=s3_bucket, Key="pre/files/t1/f.jsonl", Body=b"abcdeX",
                  Metadata={"sha256": obj.sha256, "size": "6"})
    fresh = _s3(s3_bucket, tmp_path / "cache-b")
    with pytest.raises(StorageError, match="changed or corrupted"):
        fresh.local_path("models/t1/job-1")
    with pytest.raises(StorageError, match="changed or corrupted"):
        fresh.open("files/t1/f.jsonl")
    assert [p for p in (tmp_path / "cache-b").rglob("*") if p.is_file()] == []  # nothing half-trusted kept


def test_a_folder_without_its_manifest_is_not_served(s3_bucket, tmp_path):
    import boto3

    st = _s3(s3_bucket, tmp_path / "cache-a")
    st.put_dir("models/t1/job-1", _folder(tmp_path / "run"))
    # an upload that died before its last write: the files are there, the manifest is not
    boto3.client("s3").delete_object(Bucket=s3_bucket, Key="pre/models/t1/job-1/.tuneforge-manifest.json")
    fresh = _s3(s3_bucket, tmp_path / "cache-b")
    assert not fresh.exists("models/t1/job-1")
    with pytest.raises(StorageError, match="incomplete"):
        fresh.local_path("models/t1/job-1")
    assert not (tmp_path / "cache-b").exists() or not any((tmp_path / "cache-b").rglob("*.safetensors"))
    # publishing it again completes it (a retried job): a file the new version lacks goes from the bucket too
    fresh.put_dir("models/t1/job-1", _folder(tmp_path / "run2"))
    again = _folder(tmp_path / "run3")
    (again / "empty.txt").unlink()
    fresh.put_dir("models/t1/job-1", again)
    assert "pre/models/t1/job-1/empty.txt" not in _keys(s3_bucket)
    folder = _s3(s3_bucket, tmp_path / "cache-c").local_path("models/t1/job-1")
    assert (folder / "sub" / "config.json").exists() and not (folder / "empty.txt").exists()


def test_a_service_job_keeps_its_model_in_the_bucket(s3_bucket, tmp_path, tiny_bert):
    from fastapi.testclient import TestClient

    from tuneforge.api import create_app
    from tuneforge.inference import load_predictor
    from tuneforge.store.models import Model

    settings = make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'tf.db'}", embedded_workers=1,
                             base_models={"tiny-bert": tiny_bert}, storage_url=f"s3://{s3_bucket}/tf")
    app = create_app(settings)
    with TestClient(app) as client:
        _, key = new_tenant(app.state.tuneforge.sessions)
        auth = {"Authorization": f"Bearer {key}"}
        r = client.post("/v1/files", files={"file": ("train.jsonl", jsonl(rows()))}, data={"purpose": "fine-tune"},
                        headers=auth)
        assert r.status_code == 200, r.text
        body = {"model": "tiny-bert", "training_file": r.json()["id"], "metadata": {"task": "classification"},
                "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
                "max_length": 32}
        job = client.post("/v1/fine_tuning/jobs", json=body, headers=auth).json()
        deadline = time.monotonic() + 180
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"job still {job['status']}"
            time.sleep(0.3)
            job = client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=auth).json()
        assert job["status"] == "succeeded", job["error"]
        texts = ["a good movie", "boring film", "i love this film"]
        served = client.post("/v1/predict", json={"model": job["fine_tuned_model"], "inputs": texts},
                             headers=auth).json()["data"]
        with app.state.tuneforge.sessions() as s:
            storage_key = s.get(Model, job["fine_tuned_model"]).storage_key
    keys = _keys(s3_bucket)
    assert any(k.startswith("tf/files/") for k in keys)  # the upload
    assert f"tf/{storage_key}/model.safetensors" in keys and f"tf/{storage_key}/.tuneforge-manifest.json" in keys
    assert not list((tmp_path / "data").glob("artifacts/*"))  # nothing went to the local artifacts folder

    # another machine serving the model: pulled from the bucket into its cache, checked, predicting the same
    remote = _s3(s3_bucket, tmp_path / "elsewhere", prefix="tf").local_path(storage_key)
    local = app.state.tuneforge.storage.local_path(storage_key)
    manifest = json.loads((local / "tuneforge.json").read_text())
    assert json.loads((remote / "tuneforge.json").read_text()) == manifest
    assert (remote / "model.safetensors").read_bytes() == (local / "model.safetensors").read_bytes()
    predictions = load_predictor(remote).predict(texts)
    assert [p["label"] for p in predictions] == [p["label"] for p in served]
    for mine, theirs in zip(predictions, served, strict=True):
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
