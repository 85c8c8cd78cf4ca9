"""DPO (``--method dpo``) end to end on a tiny in-process Llama through the CLI: the DPO loss falls and the reward
accuracy on the training pairs rises, the reference log-probabilities are the starting model's (a base folder, or
an SFT run used as ``--base-model``), evaluate reports preference_accuracy for the base model and the DPO run,
the run folder loads with load_predictor and with peft, and files of the wrong kind are refused with a message
naming the method that fits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.tasks.test_generation_task import chat_rows, cli, write_jsonl
from tuneforge.methods import get_method
from tuneforge.tasks import get_task

QUESTIONS = ["Where is the Eiffel Tower?", "Say hello.", "What is the answer?", "How do I reset my password?"]
GOOD = ["The Eiffel Tower is in Paris, France.", "Hello there, nice to meet you!", "The answer is forty-two.",
        "Open the settings page and choose reset password."]


def pair_rows(n: int = 12) -> list[dict]:
    """TRL-style pairs whose rejected answer is short ("No."), which a model that has learned nothing prefers."""
    return [{"prompt": QUESTIONS[i % 4], "chosen": GOOD[i % 4], "rejected": "No."} for i in range(n)]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFORGE_CACHE_DIR", str(tmp_path / "cache"))  # merged SFT runs go here


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def _predictions(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


def _train_log(output: str) -> list[tuple[float, float]]:
    """(loss, rewards/accuracies) of each training log line the CLI printed."""
    return [(float(m.group(1)), float(m.group(2))) for m in
            re.finditer(r"loss (\d+\.\d+) lr \S+ rewards/accuracies (\d+\.\d+)", output.replace("\n", " "))]


def test_dpo_trains_generation_only_with_its_own_options() -> None:
    from tuneforge.errors import ConfigError
    from tuneforge.training.config import make_config

    dpo = get_method("dpo")
    assert dpo.supports(get_task("generation")) and dpo.preference and not get_method("lora").preference
    assert not any(dpo.supports(get_task(t)) for t in ("classification", "ner", "qa"))
    cfg = make_config({"task": "generation", "method": "dpo", "data": "p.jsonl", "output": "o", "dpo_beta": 0.3})
    opts = dpo.options(cfg)
    assert (opts.dpo_beta, opts.dpo_full) == (0.3, False)
    with pytest.raises(ConfigError, match="packing"):
        make_config({"task": "generation", "method": "dpo", "data": "p.jsonl", "output": "o", "packing": True})
    with pytest.raises(ConfigError, match="dpo_beta"):
        make_config({"task": "generation", "method": "dpo", "data": "p.jsonl", "output": "o", "dpo_beta": 0})


def test_dpo_learns_the_pairs_and_evaluate_compares_it_with_its_base(tmp_path: Path, tiny_chat_model: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneforge.inference import load_predictor

    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(12))
    dev = write_jsonl(tmp_path / "dev.jsonl", pair_rows(4))
    run = tmp_path / "dpo"
    code, output = cli(capsys, "train", "--task", "generation", "--method", "dpo", "--data", str(pairs),
                       "--eval-data", str(dev), "--base-model", str(tiny_chat_model), "--output", str(run),
                       "--epochs", "10", "--batch-size", "4", "--lr", "2e-2", "--dpo-beta", "0.2",
                       "--logging-steps", "3", "--precision", "fp32")
    assert code == 0, output
    log = _train_log(output)
    assert len(log) >= 5
    (first_loss, first_acc), (last_loss, last_acc) = log[0], log[-1]
    assert first_loss == pytest.approx(0.6931, abs=1e-3) and first_acc == 0.0  # the policy starts as its reference
    assert last_loss < first_loss - 0.1 and last_acc > first_acc + 0.5
    assert "eval_rewards/accuracies" not in output and "rewards/accuracies" in output and "valid_loss" in output

    manifest = json.loads((run / "tuneforge.json").read_text(encoding="utf-8"))
    assert manifest["method"] == "dpo" and manifest["config"]["dpo_beta"] == 0.2
    assert (run / "adapter_model.safetensors").is_file() and not (run / "model.safetensors").exists()
    pref = manifest["training"]["preference"]
    assert pref["beta"] == 0.2 and set(pref) == {"beta", "train", "eval"}
    assert {"rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected"} <= set(pref["train"])
    assert pref["eval"]["valid_loss"] == pytest.approx(manifest["metrics"]["dev"]["valid_loss"], abs=1e-4)
    assert {"preference_accuracy", "reward_margin", "valid_loss", "n"} <= set(manifest["metrics"]["dev"])

    code, output = cli(capsys, "evaluate", str(tiny_chat_model), "--task", "generation", "--data", str(pairs),
                       "--output", str(tmp_path / "base-report"))
    assert code == 0, output
    code, output = cli(capsys, "evaluate", str(run), "--data", str(pairs), "--output", str(tmp_path / "dpo-report"))
    assert code == 0, output
    base, tuned = _metrics(tmp_path / "base-report"), _metrics(tmp_path / "dpo-report")
    assert "preference_accuracy" in output
    assert base["n"] == tuned["n"] == 12 and "valid_loss" not in base  # a base model: plain log-probabilities
    assert tuned["preference_accuracy"] >= 0.9 > base["preference_accuracy"]
    assert tuned["reward_margin"] > 0
    # the DPO run's reference (its adapter disabled) is the base model, pair by pair
    for b, t in zip(_predictions(tmp_path / "base-report"), _predictions(tmp_path / "dpo-report"), strict=True):
        assert t["ref_chosen_logp"] == pytest.approx(b["chosen_logp"], abs=1e-3)
        assert t["ref_rejected_logp"] == pytest.approx(b["rejected_logp"], abs=1e-3)
        assert t["chosen_reward"] == pytest.approx(0.2 * (t["chosen_logp"] - t["ref_chosen_logp"]), abs=1e-4)

    # the run folder loads with load_predictor and, as any LoRA run, with peft on its base model
    predictor = load_predictor(run)
    with_peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_chat_model)), str(run)).eval()
    ids = torch.tensor([predictor.tokenizer("<|im_start|>user\nSay hello.<|im_end|>\n")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(predictor.model(input_ids=ids).logits, with_peft(input_ids=ids).logits, atol=1e-5)
    [reply] = predictor.predict(["Say hello."], max_new_tokens=3)
    assert isinstance(reply["text"], str)


def test_dpo_from_an_sft_run_uses_it_as_the_reference(tmp_path: Path, tiny_chat_model: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    chat = write_jsonl(tmp_path / "chat.jsonl", chat_rows(12))
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(12))
    sft = tmp_path / "sft"
    code, output = cli(capsys, "train", "--task", "generation", "--data", str(chat), "--base-model",
                       str(tiny_chat_model), "--output", str(sft), "--epochs", "2", "--batch-size", "4", "--lr",
                       "3e-2", "--precision", "fp32")
    assert code == 0, output
    run = tmp_path / "dpo"
    code, output = cli(capsys, "train", "--task", "generation", "--method", "dpo", "--data", str(pairs),
                       "--base-model", str(sft), "--output", str(run), "--epochs", "2", "--batch-size", "4",
                       "--lr", "2e-2", "--precision", "fp32")
    assert code == 0, output
    manifest = json.loads((run / "tuneforge.json").read_text(encoding="utf-8"))
    assert manifest["base_model"]["name"] == "sft"
    merged = Path(manifest["base_model"]["path"])
    assert merged.is_relative_to(tmp_path / "cache") and (merged / "model.safetensors").is_file()

    # the SFT run evaluated on the pairs (plain log-probabilities) is the DPO run's reference
    code, output = cli(capsys, "evaluate", str(sft), "--data", str(pairs), "--name", "pairs")
    assert code == 0, output
    code, output = cli(capsys, "evaluate", str(run), "--data", str(pairs), "--name", "pairs")
    assert code == 0, output
    assert "valid_loss" not in _metrics(sft / "eval-pairs") and "valid_loss" in _metrics(run / "eval-pairs")
    for s, d in zip(_predictions(sft / "eval-pairs"), _predictions(run / "eval-pairs"), strict=True):
        assert d["ref_chosen_logp"] == pytest.approx(s["chosen_logp"], abs=1e-3)
        assert d["ref_rejected_logp"] == pytest.approx(s["rejected_logp"], abs=1e-3)

    # the merged base is made again when the cache lost it
    import shutil

    from tuneforge.inference import load_predictor

    shutil.rmtree(merged)
    assert load_predictor(run).predict_examples(get_task("generation").read(pairs).examples[:1])[0]["ref_chosen_logp"] \
        == pytest.approx(_predictions(sft / "eval-pairs")[0]["chosen_logp"], abs=1e-3)


def test_full_dpo_trains_every_weight_against_a_frozen_copy(tmp_path: Path, tiny_chat_model: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(12))
    run = tmp_path / "dpo-full"
    code, output = cli(capsys, "train", "--task", "generation", "--method", "dpo", "--dpo-full", "--data", str(pairs),
                       "--base-model", str(tiny_chat_model), "--output", str(run), "--epochs", "4", "--batch-size",
                       "4", "--lr", "1e-3", "--logging-steps", "3", "--precision", "fp32", "--train-embeddings")
    assert code == 0, output
    manifest = json.loads((run / "tuneforge.json").read_text(encoding="utf-8"))
    assert (run / "model.safetensors").is_file() and manifest["training"]["trainable_share"] == 1.0
    log = _train_log(output)
    assert log[0][0] == pytest.approx(0.6931, abs=1e-3) and log[-1][0] < log[0][0]
    code, output = cli(capsys, "evaluate", str(run), "--data", str(pairs), "--name", "pairs")
    assert code == 0, output
    metrics = _metrics(run / "eval-pairs")
    assert metrics["preference_accuracy"] > 0.5 and metrics["valid_loss"] < 0.6931


@pytest.mark.parametrize("method", ["dpo", "lora", "full"])
def test_a_file_of_the_other_kind_is_refused_naming_the_method_that_fits(tmp_path: Path, tiny_chat_model: Path,
                                                                         capsys: pytest.CaptureFixture[str],
                                                                         method: str) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", chat_rows(12) if method == "dpo" else pair_rows(12))
    out = tmp_path / "run"
    code, output = cli(capsys, "train", "--task", "generation", "--method", method, "--data", str(data),
                       "--base-model", str(tiny_chat_model), "--output", str(out), "--precision", "fp32")
    assert code != 0 and "Traceback" not in output and not out.exists()
    text = " ".join(output.split())
    if method == "dpo":
        assert "DPO needs preference pairs" in text and "chat conversations" in text
        assert "--method lora or full" in text
    else:
        assert "preference pairs" in text and "--method dpo" in text and f"--method {method}" in text


def test_an_auto_dpo_batch_holds_half_the_sft_examples(tmp_path: Path) -> None:
    """A pair is two sequences: auto batch 4 pairs for DPO where SFT takes 8 conversations; a set size wins."""
    from tuneforge.training.config import make_config
    from tuneforge.training.setup import auto_hyperparameters

    task = get_task("generation")

    def batch(method: str, **extra: object) -> int:
        cfg = make_config({"task": "generation", "data": str(tmp_path / "d.jsonl"), "output": str(tmp_path / "o"),
                           "method": method, **extra}, "test")
        return int(auto_hyperparameters(cfg, n_train=64, model_config={}, model_max=512, task=task)["batch_size"])

    assert get_method("dpo").sequences_per_example == 2 and get_method("lora").sequences_per_example == 1
    assert (batch("lora"), batch("dpo"), batch("dpo", batch_size=8)) == (8, 4, 8)
