"""The drift report on a tiny in-process model, and ``tuneforge drift``: in-distribution inputs are no drift,
inputs of another domain are (with the unknown-token rate rising for a script the vocabulary lacks), the reference
defaults to the training file the manifest names, the threshold comes from the run folder, ``--json`` has the
documented shape and the command exits 0 either way."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tuneforge import runs
from tuneforge.cli import main
from tuneforge.errors import ConfigError
from tuneforge.evaluation.drift import RunModel, drift_report, render_html, run_drift, write_model_threshold

MOVIE = ["the", "movie", "film", "was", "is", "good", "great", "bad", "awful", "fun", "boring", "very", "not", "a",
         "i", "love", "hate", "this", "it"]
OTHER = ["refund", "order", "delivery", "package", "password", "account", "cancel", "help", "please", "my",
         "жд", "щюя"]  # the last two are not in the tiny vocabulary: [UNK]


def _texts(words: list[str], n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"text": " ".join(rng.choice(words) for _ in range(rng.randint(4, 9))),
             "label": rng.choice(["positive", "negative"])} for _ in range(n)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_bert) -> Path:
    """A classification run of the tiny BERT (untrained head) whose manifest names its training file."""
    import torch
    from transformers import AutoTokenizer

    from tuneforge.tasks import get_task

    tmp = tmp_path_factory.mktemp("drift-run")
    train = write_jsonl(tmp / "train.jsonl", _texts(MOVIE, 120, 0))
    out = tmp / "run"
    torch.manual_seed(0)
    labels = ["negative", "positive"]
    get_task("classification").build_model(tiny_bert, labels, multi_label=False).save_pretrained(
        str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(tiny_bert)).save_pretrained(str(out))
    runs.write_manifest(out, {"name": "run", "task": "classification", "labels": labels, "max_length": 32,
                              "stride": 16, "multi_label": False, "method": "full",
                              "base_model": {"name": "tiny-bert", "path": str(tiny_bert)},
                              "data": {"train": {"path": str(train), "examples": 120}}})
    write_jsonl(tmp / "same.jsonl", _texts(MOVIE, 60, 1))
    write_jsonl(tmp / "other.jsonl", _texts(OTHER, 60, 2))
    return out


def test_in_distribution_is_no_drift_and_another_domain_is(run_dir):
    model = RunModel(run_dir)
    same, ref = run_drift(run_dir, run_dir.parent / "same.jsonl", model=model, permutations=50)
    other, _ = run_drift(run_dir, run_dir.parent / "other.jsonl", model=model, permutations=50)
    assert ref == run_dir.parent / "train.jsonl"  # the manifest's training file
    assert not same.drift and same.score < 0.6
    assert other.drift and other.score > 0.9 and other.method == "domain_classifier_auc"
    vocab = other.details["vocabulary"]
    assert vocab["current_unk_token_rate"] > 0.05 and same.details["vocabulary"]["current_unk_token_rate"] == 0
    assert vocab["unseen_word_rate"] > 0.9 and same.details["vocabulary"]["unseen_word_rate"] == 0
    assert other.details["embedding"]["mmd_p_value"] < 0.05
    preds = other.details["predictions"]
    assert set(preds["reference_shares"]) == {"negative", "positive"}
    assert sum(preds["current_shares"].values()) == pytest.approx(1.0)
    assert {c["name"] for c in other.details["checks"]} >= {"domain_classifier_auc", "mmd_p_value", "label_psi",
                                                            "label_chi_square_p_value", "confidence_drop",
                                                            "unk_token_rate_rise", "unseen_word_rate_rise"}
    assert other.details["sizes"] == {"reference": 120, "reference_total": 120, "current": 60}
    page = render_html(other, run="run", reference=str(ref))
    assert page.startswith("<!doctype html>") and "Drift" in page and "<script" not in page


def test_the_reference_is_sampled_with_a_fixed_seed(run_dir):
    model = RunModel(run_dir)
    ref = [dict(e) for e in _texts(MOVIE, 120, 0)]
    cur = _texts(MOVIE, 30, 5)
    a = drift_report(model, ref, cur, reference_size=50, permutations=20)
    b = drift_report(model, ref, cur, reference_size=50, permutations=20)
    assert a.details["sizes"]["reference"] == 50 and a.to_json() == b.to_json()


def test_a_window_too_small_is_refused_with_what_to_do(run_dir):
    with pytest.raises(ConfigError, match="at least 10"):
        drift_report(RunModel(run_dir), _texts(MOVIE, 50, 0), _texts(MOVIE, 3, 1))


def _drift_json(capsys, *args: str) -> dict:
    assert main(["drift", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_json_shape_and_exit_code_zero_either_way(run_dir, tmp_path, capsys):
    results = {}
    for name in ("same", "other"):
        results[name] = _drift_json(capsys, str(run_dir), "--data", str(run_dir.parent / f"{name}.jsonl"),
                                    "--html", str(tmp_path / f"{name}.html"))
        assert set(results[name]) == {"drift", "score", "method", "threshold", "details"}
        assert (tmp_path / f"{name}.html").read_text().startswith("<!doctype html>")
    assert results["same"]["drift"] is False and results["other"]["drift"] is True
    assert results["same"]["threshold"] == 0.6
    assert main(["drift", str(run_dir), "--data", str(run_dir.parent / "other.jsonl")]) == 0  # the table
    assert "domain_classifier_auc" in capsys.readouterr().out


def test_cli_reference_override_and_the_run_folders_threshold(run_dir, tmp_path, capsys):
    import shutil

    same = str(run_dir.parent / "same.jsonl")
    # the "other" file as the reference: the movie window is now the shifted one
    assert _drift_json(capsys, str(run_dir), "--data", same, "--reference",
                       str(run_dir.parent / "other.jsonl"))["drift"] is True
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    write_model_threshold(copy, 0.99)
    body = _drift_json(capsys, str(copy), "--data", str(run_dir.parent / "other.jsonl"))
    assert body["threshold"] == 0.99 and body["drift"] is (body["score"] > 0.99)
    assert _drift_json(capsys, str(copy), "--data", same, "--threshold", "0.7", "--save-threshold")["threshold"] == 0.7
    assert json.loads((copy / "drift.json").read_text())["threshold"] == 0.7


def test_cli_says_to_pass_a_reference_when_the_training_file_is_gone(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    manifest = runs.read_manifest(copy)
    manifest["data"]["train"]["path"] = str(tmp_path / "gone.jsonl")
    runs.write_manifest(copy, manifest)
    assert main(["drift", str(copy), "--data", str(run_dir.parent / "same.jsonl")]) == 2
    captured = capsys.readouterr()
    assert "--reference" in captured.out + captured.err


def test_cli_takes_a_registered_model_and_its_kept_training_data(run_dir, tmp_path, capsys, monkeypatch):
    """``tuneforge drift sst@1``: the version's folder in the offline registry; with the manifest's training file
    gone, the copy the registry keeps with the version is the reference."""
    import shutil

    from tuneforge.store.registry import local_registry

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    kept = shutil.copy(run_dir.parent / "train.jsonl", tmp_path / "kept.jsonl")
    manifest = runs.read_manifest(copy)
    manifest["data"]["train"]["path"] = str(tmp_path / "gone.jsonl")
    runs.write_manifest(copy, manifest)
    monkeypatch.setenv("TUNEFORGE_REGISTRY_DIR", str(tmp_path / "registry"))
    local_registry(tmp_path / "registry").register("sst", copy, actor="test", train_data=Path(kept))
    body = _drift_json(capsys, "sst@1", "--data", str(run_dir.parent / "other.jsonl"))
    assert body["drift"] is True and body["details"]["reference"].endswith("train.jsonl")
