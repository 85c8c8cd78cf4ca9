"""The ``generation`` task end to end on a tiny Llama built in-process: train (LoRA by default, and full) through the
CLI, loss falls, evaluate writes the OpenAI-named token metrics and EM / F1 / ROUGE-L, predict generates, and the
prompt ids at predict equal those at training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.tasks.test_generation_collate import tiny_llama
from tuneforge.tasks import get_task, guess_task, load_dataset
from tuneforge.tasks.generation.collate import PackingCollator, PaddingCollator
from tuneforge.tasks.generation.template import IGNORE_INDEX, render_prompt

QA = [("Where is the Eiffel Tower?", "It is in Paris."), ("Say hello.", "Hello there!"),
      ("What is the answer?", "The answer is 42."), ("How do I reset my password?", "Reset your password from the "
                                                                                    "settings page.")]


def chat_rows(n: int = 12) -> list[dict]:
    return [{"messages": [{"role": "user", "content": QA[i % len(QA)][0]},
                          {"role": "assistant", "content": QA[i % len(QA)][1]}]} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# tiny_chat_model: tests/conftest.py (a random tiny Llama and a ChatML tokenizer saved as a folder)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    from tuneforge.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_generation_is_registered_and_detected_from_a_messages_file() -> None:
    task = get_task("generation")
    assert task.generative and task.auto_model_kind == "causal-lm"
    assert guess_task(["messages"]) == "generation"
    assert guess_task(["prompt", "completion"]) == "generation"
    # the other tasks' files are detected as before
    assert guess_task(["text", "label"]) == "classification"
    assert guess_task(["tokens", "tags"]) == "ner"
    assert guess_task(["question", "context", "answers"]) == "qa"
    assert guess_task(["prompt", "label"]) == "classification"


def test_only_full_lora_and_dpo_train_generation() -> None:
    from tuneforge.methods import get_method, method_names

    task = get_task("generation")
    assert sorted(m for m in method_names() if get_method(m).supports(task)) == ["dpo", "full", "lora"]
    for other in ("classification", "ner", "qa"):
        assert get_method("full").supports(get_task(other)) and get_method("lora").supports(get_task(other))


def test_lora_is_the_default_method_for_generation_only(tmp_path: Path) -> None:
    from tuneforge.errors import ConfigError
    from tuneforge.training.config import make_config

    common = {"data": "x.jsonl", "output": str(tmp_path / "o")}
    assert make_config({"task": "generation", **common}).method == "lora"
    assert make_config({"task": "generation", "method": "full", **common}).method == "full"
    assert make_config({"task": "classification", **common}).method == "full"
    with pytest.raises(ConfigError, match="packing"):
        make_config({"task": "classification", "packing": True, **common})
    with pytest.raises(ConfigError, match="does not support generation"):
        make_config({"task": "generation", "method": "ia3", **common})


def test_a_training_file_needs_ten_examples_an_evaluation_file_does_not(tmp_path: Path) -> None:
    from tuneforge.errors import DataError

    small = write_jsonl(tmp_path / "small.jsonl", chat_rows(3))
    with pytest.raises(DataError, match="insufficient_examples"):
        load_dataset(small, "generation", min_classes=2)
    assert len(load_dataset(small, "generation")) == 3


def test_encode_learns_only_the_replies_and_the_collators_batch_them(tiny_chat_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_chat_model))
    task = get_task("generation")
    enc = task.encode(chat_rows(4), tok, [], max_length=64)
    assert len(enc.features) == 4 and enc.truncated == 0
    for f in enc.features:
        learned = [t for t, y in zip(f["input_ids"], f["labels"], strict=True) if y != IGNORE_INDEX]
        assert learned and tok.eos_token_id in learned[-2:]  # the end-of-turn token is trained (then ChatML's newline)
        assert f["labels"][0] == IGNORE_INDEX  # the prompt is not
    assert isinstance(task.collator(tok), PaddingCollator)
    assert isinstance(task.collator(tok, packing=True), PackingCollator)


def test_count_tokens_counts_the_rendered_conversations_or_prompts(tiny_chat_model: Path) -> None:
    from transformers import AutoTokenizer

    from tuneforge.tasks.generation.template import render_example

    tok = AutoTokenizer.from_pretrained(str(tiny_chat_model))
    task = get_task("generation")
    rows = chat_rows(3)
    full = sum(len(render_example(tok, r["messages"]).input_ids) for r in rows)
    assert task.count_tokens(rows, tok) == full
    assert task.count_tokens(rows, tok, max_length=5) == 15
    prompt = task.parse_input("Say hello.", 0)
    assert task.count_tokens([prompt], tok) == len(render_prompt(tok, prompt["messages"]))


def test_preference_pairs_are_refused_for_sft_and_conversations_for_dpo_with_a_message(tmp_path: Path) -> None:
    from tuneforge.errors import ConfigError

    pair = {"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}
    task = get_task("generation")
    pairs = load_dataset(write_jsonl(tmp_path / "pairs.jsonl", [pair] * 3), "generation")
    chats = load_dataset(write_jsonl(tmp_path / "chat.jsonl", chat_rows(3)), "generation")
    with pytest.raises(ConfigError, match="--method dpo"):
        task.check_method_data(pairs, method="lora", preference=False)
    with pytest.raises(ConfigError, match="DPO needs preference pairs"):
        task.check_method_data(chats, method="dpo", preference=True)
    task.check_method_data(pairs, method="dpo", preference=True)
    task.check_method_data(chats, method="full", preference=False)


def test_training_metrics_from_reduced_logits_equal_the_token_stats(tiny_chat_model: Path) -> None:
    """valid_loss during training (logits reduced batch by batch) equals the teacher-forced loss of evaluate."""
    from transformers import AutoTokenizer, EvalPrediction

    from tuneforge.tasks.generation.metrics import TokenStats, token_stats

    tok = AutoTokenizer.from_pretrained(str(tiny_chat_model))
    model = tiny_llama(tok)
    task = get_task("generation")
    feats = task.encode(chat_rows(4), tok, [], max_length=64).features
    batch = PaddingCollator(tok.pad_token_id)(feats)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    reduced = task.preprocess_logits(logits, batch["labels"])
    got = task.token_metrics(EvalPrediction(predictions=reduced.numpy(), label_ids=batch["labels"].numpy()))
    expected = TokenStats()
    expected += token_stats(logits, batch["labels"])
    assert got["valid_loss"] == pytest.approx(expected.loss, rel=1e-5)
    assert got["valid_mean_token_accuracy"] == pytest.approx(expected.mean_token_accuracy)


# LoRA (rank 4 on q/v) moves a random tiny model slowly; full fine-tuning (here with packing) fast
@pytest.mark.parametrize(("method", "epochs", "lr", "drop"), [("lora", "8", "3e-2", 0.1), ("full", "4", "5e-3", 1.0)])
def test_train_evaluate_predict_through_the_cli(tmp_path: Path, tiny_chat_model: Path, method: str, epochs: str,
                                                lr: str, drop: float, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoTokenizer

    from tuneforge.inference import load_predictor
    from tuneforge.tasks.generation.template import render_example

    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(12))
    dev = write_jsonl(tmp_path / "dev.jsonl", chat_rows(4))
    run = tmp_path / "run"
    argv = ["train", "--task", "generation", "--data", str(data), "--eval-data", str(dev), "--base-model",
            str(tiny_chat_model), "--output", str(run), "--epochs", epochs, "--batch-size", "4", "--lr", lr,
            "--precision", "fp32"]
    if method == "full":
        argv += ["--method", "full", "--packing"]
    code, output = cli(capsys, *argv)
    assert code == 0, output
    manifest = json.loads((run / "tuneforge.json").read_text(encoding="utf-8"))
    assert manifest["task"] == "generation" and manifest["method"] == method
    assert manifest["chat_template"] and "<|im_start|>" in manifest["chat_template"]
    assert manifest["config"]["packing"] is (method == "full")
    assert (run / ("adapter_model.safetensors" if method == "lora" else "model.safetensors")).is_file()
    # the dev evaluations during training report valid_loss (from the logits, not generated text)
    assert "valid_loss" in output and "valid_mean_token_accuracy" in output
    dev_metrics = manifest["metrics"]["dev"]
    assert {"valid_loss", "valid_mean_token_accuracy", "exact_match", "f1", "rougeL"} <= set(dev_metrics)

    # the loss on the training conversations fell below the untrained model's
    tok = AutoTokenizer.from_pretrained(str(run))
    base_loss = _loss(tiny_chat_model, tok, data)
    code, output = cli(capsys, "evaluate", str(run), "--data", str(data), "--name", "train")
    assert code == 0, output
    metrics = json.loads((run / "eval-train" / "metrics.json").read_text(encoding="utf-8"))
    assert {"valid_loss", "valid_mean_token_accuracy", "exact_match", "f1", "rougeL"} <= set(metrics)
    assert metrics["valid_loss"] < base_loss - drop, (metrics["valid_loss"], base_loss)
    assert 0.0 <= metrics["f1"] <= 100.0 and 0.0 <= metrics["rougeL"] <= 100.0

    code, output = cli(capsys, "predict", str(run), "Where is the Eiffel Tower?", "--max-new-tokens", "3")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0] == "Where is the Eiffel Tower?" and len(lines) >= 2 and '{"text"' not in output  # the reply

    predictor = load_predictor(run)
    [pred] = predictor.predict(["Where is the Eiffel Tower?"])
    assert set(pred) == {"text", "finish_reason", "prompt_tokens", "completion_tokens"}
    assert isinstance(pred["text"], str) and pred["finish_reason"] in ("stop", "length")
    # one rendering: the prompt ids fed to generate are the prefix of the training ids before the reply
    messages = [{"role": "user", "content": "Where is the Eiffel Tower?"}]
    prompt_ids = render_prompt(predictor.tokenizer, predictor.to_examples(["Where is the Eiffel Tower?"])[0]
                               ["messages"])
    trained = render_example(tok, messages + [{"role": "assistant", "content": "It is in Paris.", "weight": 1}])
    first_learned = next(i for i, y in enumerate(trained.labels) if y != IGNORE_INDEX)
    assert prompt_ids == trained.input_ids[:first_learned]


def _loss(model_dir: Path, tok: object, data: Path) -> float:
    """The teacher-forced loss of the untrained model on ``data``, through the task's own scoring."""
    from transformers import AutoModelForCausalLM

    task = get_task("generation")
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    examples = load_dataset(data, "generation").examples
    preds = task.predict(model, tok, examples, [], max_length=64, max_new_tokens=4)
    return float(task.score(preds, examples, [])["valid_loss"])


def test_predict_generates_greedily_from_left_padded_batches(tiny_chat_model: Path) -> None:
    """Batched generation (prompts of different lengths, left-padded) gives what one prompt at a time gives."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_chat_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_chat_model))
    task = get_task("generation")
    examples = [task.parse_input(q, i) for i, (q, _) in enumerate(QA)]
    together = task.predict(model, tok, examples, [], max_length=64, batch_size=4, max_new_tokens=6)
    alone = [task.predict(model, tok, [ex], [], max_length=64, batch_size=1, max_new_tokens=6)[0]
             for ex in examples]
    assert [p["text"] for p in together] == [p["text"] for p in alone]
    assert all("tokens" not in p for p in together)  # no reference reply, no loss
