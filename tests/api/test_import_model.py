"""Bring your own run: a run folder trained with the CLI, uploaded as a .tar.gz, becomes the tenant's model (served
by its name or id, metered, invisible to other tenants); folders with pickles, without a manifest or on an unknown
base model are refused with a message naming the problem."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import write_jsonl
from tuneforge.training import make_config, train

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115


@pytest.fixture(scope="module")
def lora_run(tiny_bert, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("byo")
    rows = [{"text": t, "label": "yes" if i % 2 else "no"} for i, t in
            enumerate(["a good movie", "awful", "i love it", "boring film", "great fun", "bad"] * 2)]
    cfg = make_config({"task": "classification", "data": str(write_jsonl(root / "train.jsonl", rows)),
                       "base_model": str(tiny_bert), "output": str(root / "run"), "epochs": 1, "batch_size": 4,
                       "precision": "fp32", "method": "lora", "max_length": 32})
    return train(cfg, console=QUIET).output


def _archive(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname="run")
    return buf.getvalue()


def _upload(client, folder: Path, name: str):
    return client.post("/v1/models/import", data={"name": name},
                       files={"file": ("run.tar.gz", _archive(folder), "application/gzip")})


def test_an_imported_run_is_served_by_name_and_only_to_its_tenant(api, lora_run):
    acme, globex = api.as_(api.tenant()[1]), api.as_(api.tenant()[1])
    r = _upload(acme, lora_run, "mine")
    assert r.status_code == 200, r.text
    model = r.json()
    assert model["id"].startswith("ft:tiny-bert:") and ":mine:" in model["id"] and model["task"] == "classification"
    by_name = acme.post("/v1/predict", json={"model": "mine", "inputs": ["a good movie", "bad"]})
    assert by_name.status_code == 200, by_name.text
    assert by_name.json()["model"] == model["id"]
    assert {d["label"] for d in by_name.json()["data"]} <= {"yes", "no"} and by_name.json()["usage"]["total_tokens"] > 0
    by_id = acme.post("/v1/predict", json={"model": model["id"], "inputs": ["a good movie", "bad"]})
    assert by_id.json()["data"] == by_name.json()["data"]
    assert acme.get("/v1/models/mine").json()["id"] == model["id"]
    for ref in ("mine", model["id"]):  # another tenant sees nothing
        assert globex.post("/v1/predict", json={"model": ref, "inputs": ["x"]}).status_code == 404
        assert globex.get(f"/v1/models/{ref}").status_code == 404
    assert _upload(acme, lora_run, "mine").status_code == 409  # one model per name
    assert _upload(globex, lora_run, "mine").status_code == 200  # names are per tenant


def test_unsafe_incomplete_or_foreign_runs_are_refused(api, lora_run, tmp_path):
    acme = api.as_(api.tenant()[1])
    pickled = shutil.copytree(lora_run, tmp_path / "pickled")
    (pickled / "optimizer.pt").write_bytes(b"\x80\x04K\x01.")
    r = _upload(acme, pickled, "p")
    assert r.status_code == 400 and "optimizer.pt" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "unsafe_weights"

    unfinished = shutil.copytree(lora_run, tmp_path / "unfinished")
    (unfinished / "tuneforge.json").unlink()
    r = _upload(acme, unfinished, "u")
    assert r.status_code == 400 and "tuneforge.json" in r.json()["error"]["message"]

    foreign = shutil.copytree(lora_run, tmp_path / "foreign")
    manifest = json.loads((foreign / "tuneforge.json").read_text())
    manifest["base_model"] = {"name": "my-private-bert", "path": "/nowhere/my-private-bert", "model_id": None}
    (foreign / "tuneforge.json").write_text(json.dumps(manifest))
    r = _upload(acme, foreign, "f")
    assert r.status_code == 400 and "my-private-bert" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "unknown_base_model"
    assert acme.get("/v1/models").json()["data"] == [m for m in acme.get("/v1/models").json()["data"]
                                                    if not m["id"].startswith("ft:")]  # nothing was registered


def test_admin_import_model_registers_a_local_run(lora_run, tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from tuneforge.cli.service import register
    from tuneforge.store.db import make_engine, make_session_factory
    from tuneforge.store.repositories import ModelRepo
    from tuneforge.store.tenants import get_tenant

    url = f"sqlite:///{tmp_path / 'tf.db'}"
    monkeypatch.setenv("TUNEFORGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TUNEFORGE_DATABASE_URL", url)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    assert runner.invoke(app, ["admin", "create-tenant", "acme"]).exit_code == 0
    r = runner.invoke(app, ["admin", "import-model", "acme", str(lora_run), "--name", "mine"])
    assert r.exit_code == 0, r.output
    pickled = shutil.copytree(lora_run, tmp_path / "pickled")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    refused = runner.invoke(app, ["admin", "import-model", "acme", str(pickled), "--name", "other"])
    assert refused.exit_code != 0 and "pytorch_model.bin" in str(refused.exception)  # main() prints it
    engine = make_engine(url)
    with make_session_factory(engine)() as s:
        m = ModelRepo(s, get_tenant(s, "acme").id).find("mine")
        assert m is not None and m.id in r.output and (tmp_path / "data" / "artifacts" / m.storage_key).is_dir()
        assert ModelRepo(s, get_tenant(s, "acme").id).find("other") is None
    engine.dispose()
