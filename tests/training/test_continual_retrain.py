"""Re-training a registered tiny model: a new version with its parent, champion / challenger on the fixed test set,
the CLI, and shadow agreement."""

from __future__ import annotations

import json

from tests.conftest import write_jsonl
from tests.training.test_train_matrix import QUIET
from tuneforge.cli import main
from tuneforge.inference import load_predictor
from tuneforge.store.registry import local_registry
from tuneforge.training import make_config, train
from tuneforge.training.continual import RetrainOptions, retrain, shadow_compare

GOOD = ["a good movie", "great fun film", "i love this film", "very good", "a great film", "good fun"]
BAD = ["a bad movie", "awful and boring", "i hate this film", "very bad", "not good", "boring film"]


def _rows(flip: bool = False) -> list[dict]:
    pos, neg = ("negative", "positive") if flip else ("positive", "negative")
    return [{"text": t, "label": pos} for t in GOOD] + [{"text": t, "label": neg} for t in BAD]


def _registered(tmp_path, tiny_bert, *, flip: bool):
    """Version 1 of "sst" in production: trained on labels flipped (a champion that is wrong on the test set) or
    right."""
    data = write_jsonl(tmp_path / "v1.jsonl", _rows(flip) * 4)
    cfg = make_config({"task": "classification", "data": str(data), "base_model": str(tiny_bert),
                       "output": str(tmp_path / "v1"), "epochs": 6, "batch_size": 8, "precision": "fp32",
                       "learning_rate": 5e-3})
    train(cfg, console=QUIET)
    reg = local_registry(tmp_path / "registry")
    v1 = reg.register("sst", tmp_path / "v1", actor="test")
    reg.set_alias("sst", "production", v1.version, actor="test")
    return reg


def test_retrain_promotes_a_version_that_beats_production(tmp_path, tiny_bert):
    reg = _registered(tmp_path, tiny_bert, flip=True)
    new = write_jsonl(tmp_path / "new.jsonl", _rows() * 4)
    test = write_jsonl(tmp_path / "test.jsonl", _rows())
    opts = RetrainOptions(new_data=new, replay=0.0, test_data=test, epochs=8, learning_rate=5e-3)
    result = retrain(reg, "sst", opts, actor="test", console=QUIET)
    v2 = result.version
    assert (v2.version, v2.parent, result.parent.version) == (2, 1, 1)
    assert result.comparison is not None and result.comparison.champion_version == 1
    assert result.comparison.challenger > result.comparison.champion  # the flipped champion is wrong
    assert result.alias == "production" and reg.get("sst").version == 2
    report = json.loads((v2.run_dir / "comparison.json").read_text())
    assert report["decision"] == "promote" and set(report["per_class"]) == {"negative", "positive"}
    assert (v2.run_dir / "comparison.md").read_text().startswith("# Champion / challenger")
    assert reg.test_data("sst") is not None  # kept with the model
    assert v2.train_data is not None and len(v2.train_data.read_text().splitlines()) == 24  # history, deduped
    assert reg.rollback("sst", actor="test").version == 1


def test_retrain_with_replay_and_ewc_but_no_test_set_stays_candidate(tmp_path, tiny_bert):
    reg = _registered(tmp_path, tiny_bert, flip=False)
    new = write_jsonl(tmp_path / "new.jsonl", [{"text": "so good", "label": "positive"},
                                                {"text": "so bad", "label": "negative"}] * 5)
    result = retrain(reg, "sst", RetrainOptions(new_data=new, replay=0.5, epochs=1, ewc=1.0), actor="test",
                     console=QUIET)
    assert result.mix["new_examples"] == 10 and result.mix["replayed_examples"] == 5
    assert result.ewc is not None and result.ewc["tensors"] > 0 and result.ewc["final_penalty"] > 0
    assert result.alias == "candidate" and result.comparison is None and "no test set" in result.message
    assert reg.get("sst").version == 1 and reg.get("sst", "candidate").version == 2
    prod, cand = load_predictor(reg.get("sst").run_dir), load_predictor(reg.get("sst", "candidate").run_dir)
    shadow = shadow_compare(prod, cand, GOOD + BAD)
    assert shadow["inputs"] == 12 and 0 <= shadow["agreement"] <= 1
    assert shadow["disagreements"] == round(12 * (1 - shadow["agreement"]))
    assert shadow_compare(prod, prod, GOOD)["agreement"] == 1.0


def test_cli_retrain_and_shadow(tmp_path, tiny_bert, monkeypatch, capsys):
    reg = _registered(tmp_path, tiny_bert, flip=False)
    monkeypatch.setenv("TUNEFORGE_REGISTRY_DIR", str(tmp_path / "registry"))
    new = write_jsonl(tmp_path / "new.jsonl", _rows())
    test = write_jsonl(tmp_path / "test.jsonl", _rows())
    code = main(["retrain", "sst", "--new-data", str(new), "--replay", "0.3", "--test-data", str(test),
                 "--epochs", "1", "--margin", "0.5", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["version"] == 2 and result["parent"] == 1 and result["alias"] in {"production", "candidate"}
    assert result["mix"]["replayed_examples"] == 4 and result["comparison"]["metric"] == "accuracy"
    assert reg.get("sst", result["alias"]).version == 2 and reg.test_data("sst") is not None
    inputs = tmp_path / "log.jsonl"
    inputs.write_text("\n".join(json.dumps(x) for x in ["a good film", {"text": "awful"}]) + "\n")
    assert main(["shadow", "sst", "--inputs", str(inputs), "--candidate", "2", "--production", "1",
                 "--json"]) == 0
    shadow = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shadow["inputs"] == 2 and shadow["candidate"] == "sst@2"
    assert main(["retrain", "sst", "--new-data", str(tmp_path / "missing.jsonl")]) == 2

