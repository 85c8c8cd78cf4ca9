"""A finished TuneForge run used as a base model is named by its manifest (``tuneforge.runs`` knows run folders;
the model registry below it only knows Hugging Face folders)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge import runs
from tuneforge.errors import RunError
from tuneforge.models.registry import resolve_base_model as registry_resolve


def _hf_folder(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (path / "model.safetensors").write_bytes(b"header is not read here")
    return path


def test_a_run_folder_is_named_by_its_manifest(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path / "folder-name")
    (folder / runs.MANIFEST).write_text(json.dumps({"name": "adapted", "task": "masked-lm"}))
    assert registry_resolve(str(folder), tmp_path).name == "folder-name"
    base = runs.resolve_base_model(str(folder), tmp_path)
    assert base.name == "adapted" and base.path == folder.resolve() and base.spec is None
    assert runs.run_name(folder) == "adapted"


def test_a_plain_folder_or_a_nameless_manifest_keeps_the_folder_name(tmp_path: Path) -> None:
    plain = _hf_folder(tmp_path / "plain")
    assert runs.run_name(plain) is None
    assert runs.resolve_base_model(str(plain), tmp_path).name == "plain"
    nameless = _hf_folder(tmp_path / "nameless")
    (nameless / runs.MANIFEST).write_text(json.dumps({"task": "classification"}))
    assert runs.resolve_base_model(str(nameless), tmp_path).name == "nameless"


def test_a_damaged_manifest_says_so(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path / "damaged")
    (folder / runs.MANIFEST).write_text("{not json")
    with pytest.raises(RunError, match="not valid JSON"):
        runs.resolve_base_model(str(folder), tmp_path)
