"""Model cards (tuneforge.evaluation.card): generated from a manifest (YAML front matter that parses, model-index
with the metrics, every hyperparameter, slices, privacy, no server paths), written into a trained run folder, and
refreshed by an evaluation written into it."""

from __future__ import annotations

import json

import yaml

from tests.conftest import write_jsonl
from tests.training.test_train_matrix import QUIET
from tuneforge.evaluation.card import base_model_card, build_card, read_card, write_card

MANIFEST = {
    "format_version": 1, "name": "sentiment", "task": "classification", "labels": ["negative", "positive"],
    "multi_label": False, "max_length": 128, "method": "lora",
    "base_model": {"name": "minilm", "model_id": "sentence-transformers/all-MiniLM-L6-v2",
                   "path": "/srv/tuneforge/cache/models/minilm"},
    "method_info": {"files": ["adapter_model.safetensors"], "saved_bytes": 1234},
    "config": {"task": "classification", "data": "/srv/tuneforge/tenants/t1/files/train.jsonl",
               "output": "/srv/tuneforge/tenants/t1/models/sentiment", "learning_rate": None, "lora_r": 8,
               "seed": 7, "columns": {"text": "review", "label": None}, "lr_scheduler": "cosine"},
    "resolved": {"learning_rate": 0.0002, "batch_size": 16, "max_length": 128, "epochs": 3.0, "precision": "bf16"},
    "data": {"train": {"path": "/srv/tuneforge/tenants/t1/files/train.jsonl", "format": "jsonl", "examples": 400,
                       "sha256": "sha256:aaa", "pii_masked": {"email": 3, "phone": 1}},
             "eval": {"path": "/srv/tuneforge/tenants/t1/files/dev.jsonl", "format": "jsonl", "examples": 200,
                      "sha256": "sha256:bbb"}},
    "metrics": {"dev": {"accuracy": 0.875, "macro_f1": 0.87, "n": 200}},
    "training": {"steps": 75, "epochs": 3.0, "train_seconds": 41.5, "wall_seconds": 50.2, "final_loss": 0.31,
                 "parameters": 22_700_000, "trainable_parameters": 70_000},
    "hardware": {"device": "cuda", "name": "NVIDIA H200", "count": 1},
    "privacy": {"epsilon": 7.91, "delta": 1e-5, "accountant": "prv"},
    "created_at": "2026-12-04T10:00:00+00:00",
}


def _front(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def test_card_from_a_manifest():
    slices = {"length": {"short": {"accuracy": 0.95, "n": 120}, "long": {"accuracy": 0.7, "n": 80},
                         "max_gap": 0.25}}
    card = build_card(MANIFEST, {"dev": {"accuracy": 0.875, "macro_f1": 0.87, "n": 200},
                                 "test": {"accuracy": 0.86, "n": 300, "slices": slices}})
    front = _front(card)
    assert front["license"] == "mit" and front["language"] == ["en"] and front["pipeline_tag"] == "text-classification"
    assert front["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert front["datasets"] == ["sha256:aaa", "sha256:bbb"]
    assert {"tuneforge", "lora", "differential-privacy", "pii-masked"} <= set(front["tags"])
    results = front["model-index"][0]["results"]
    assert front["model-index"][0]["name"] == "sentiment"
    assert [(r["dataset"]["name"], r["dataset"]["split"]) for r in results] == [("dev", "validation"), ("test", "test")]
    assert {m["type"]: m["value"] for m in results[0]["metrics"]} == {"accuracy": 0.875, "macro_f1": 0.87}
    for section in ("## Intended use", "## Training data", "## Training procedure", "## Evaluation results",
                    "## Limitations and biases", "## Privacy", "## Environmental cost"):
        assert section in card
    for option in ("lora_r", "seed", "lr_scheduler", "columns.text", "learning_rate", "batch_size"):
        assert f"| {option} |" in card
    assert "| short | 120 | 0.95 |" in card and "| long | 80 | 0.7 |" in card and "max_gap" in card
    assert "length=long (0.7)" in card  # a weak slice is named under limitations
    assert "ε = 7.91, δ = 1e-05, accountant prv" in card
    assert "train: 3 email, 1 phone" in card and "NVIDIA H200" in card and "| train_seconds | 41.5 |" in card
    assert "/srv/" not in card and "train.jsonl" in card  # paths by their file name only


def test_card_without_privacy_or_evaluations():
    manifest = {k: v for k, v in MANIFEST.items() if k not in ("privacy", "metrics", "hardware")}
    manifest["base_model"] = {"name": "my-folder", "model_id": "/models/my-folder"}
    card = build_card(manifest)
    front = _front(card)
    assert front["license"] == "unknown" and "language" not in front and "differential-privacy" not in front["tags"]
    assert front["model-index"][0]["results"] == []
    assert "Trained without differential privacy" in card and "No evaluation yet" in card
    ensemble = {"format_version": 1, "name": "both", "task": "classification", "labels": ["a", "b"],
                "method": "ensemble", "base_model": {"name": "ensemble", "model_id": "minilm, bert-tiny"},
                "method_info": {"members": ["members/0-x", "members/1-y"], "weights": [0.5, 0.5]},
                "training": {"parameters": 10, "trainable_parameters": 0}}
    front = _front(build_card(ensemble, {"test": {"accuracy": 0.9, "n": 10}}))
    assert front["license"] == "other" and "base_model" not in front  # mit and apache-2.0 bases
    assert front["model-index"][0]["results"][0]["metrics"] == [{"type": "accuracy", "name": "accuracy", "value": 0.9}]
    pretrained = {"name": "adapted", "task": "masked-lm", "method": "pretrain",
                  "base_model": {"name": "minilm", "model_id": "sentence-transformers/all-MiniLM-L6-v2"},
                  "data": {"path": "/srv/corpus.txt", "train_texts": 72, "held_out_texts": 8},
                  "pretrain": {"eval_loss_before": 5.3, "eval_loss_after": 2.6, "eval_perplexity_after": 13.5}}
    card = build_card(pretrained)
    front = _front(card)
    assert front["pipeline_tag"] == "fill-mask" and front["license"] == "mit"
    assert {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]} == {
        "masked_lm_loss": 2.6, "perplexity": 13.5}
    assert "| corpus | corpus.txt | text | 72 |" in card and "/srv/" not in card
    base = base_model_card("minilm")
    assert _front(base)["license"] == "mit" and "22.7M" in base


def test_a_trained_run_has_a_card_refreshed_by_evaluation(tmp_path, tiny_bert, cls_rows):
    from tuneforge.evaluation import evaluate_run
    from tuneforge.training import make_config, train

    rows = [{**r, "text": f"{r['text']} mail me at jane{i}@example.com"} if i % 3 == 0 else r
            for i, r in enumerate(cls_rows)]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    dev = write_jsonl(tmp_path / "dev.jsonl", cls_rows)
    out = tmp_path / "run"
    cfg = make_config({"task": "classification", "data": str(data), "eval_data": str(dev), "base_model": str(tiny_bert),
                       "output": str(out), "epochs": 1, "batch_size": 4, "precision": "fp32", "mask_pii": True})
    manifest = train(cfg, console=QUIET).manifest
    assert manifest["data"]["train"]["pii_masked"] == {"email": 4}
    assert manifest["data"]["eval"]["pii_masked"] == {} and manifest["hardware"]["device"] in ("cpu", "cuda")
    card = (out / "README.md").read_text(encoding="utf-8")
    assert json.loads((out / "tuneforge.json").read_text())["name"] == "run"
    front = _front(card)
    assert "pii-masked" in front["tags"]
    dev_metrics = {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert dev_metrics["accuracy"] == round(manifest["metrics"]["dev"]["accuracy"], 6)
    assert "| batch_size | 4 |" in card and "train: 4 email" in card

    test = write_jsonl(tmp_path / "test.jsonl", cls_rows[:6])
    metrics, folder = evaluate_run(out, test)
    assert folder == out / "eval-test"
    results = _front((out / "README.md").read_text(encoding="utf-8"))["model-index"][0]["results"]
    assert [r["dataset"]["name"] for r in results] == ["dev", "test"]
    assert {m["type"]: m["value"] for m in results[1]["metrics"]}["accuracy"] == round(metrics["accuracy"], 6)
    evaluate_run(out, test, output=tmp_path / "elsewhere")  # a report outside the run folder leaves the card as is
    assert read_card(out) == (out / "README.md").read_text(encoding="utf-8")
    (out / "README.md").unlink()
    assert "model-index" in read_card(out)  # a run without a card gets one built from its manifest
    assert write_card(out) == out / "README.md"
