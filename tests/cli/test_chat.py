"""``tuneforge chat`` and the generation flags of ``tuneforge predict`` on a tiny Llama (a base-model folder, and a
run trained from it): the conversation is kept across turns, replies stream to stdout, ``/reset`` and ``/exit``
work, the oldest turns leave the prompt when it outgrows the context, and the ids the model receives are the
ids ``render_prompt`` gives for the whole conversation (the same template on every path)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tuneforge.cli import main
from tuneforge.errors import ConfigError
from tuneforge.tasks.generation.generate import GenerationOptions, generate
from tuneforge.tasks.generation.template import render_prompt


@pytest.fixture(scope="module")
def chat_model(tiny_chat_model: Path) -> Path:
    """The random tiny Llama with a ChatML tokenizer (tests/conftest.py)."""
    return tiny_chat_model


@pytest.fixture()
def received(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The prompt ids (padding removed) of every row the Llama's ``generate`` is given."""
    from transformers import LlamaForCausalLM

    seen: list[list[int]] = []
    original = LlamaForCausalLM.generate

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        seen.extend(row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "generate", spy)
    return seen


def run_chat(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lines: str,
             *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    code = main(["chat", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def replies(folder: Path, conversations: list[list[dict[str, str]]], new: int) -> list[str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    prompts = [render_prompt(tok, c) for c in conversations]
    return [g.text for g in generate(model, tok, prompts, GenerationOptions(max_new_tokens=new), batch_size=1)]


def test_chat_keeps_the_conversation_and_streams_the_replies(chat_model: Path, received: list[list[int]],
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(chat_model))
    code, out, err = run_chat(monkeypatch, capsys, "Where is the Eiffel Tower?\n\nSay hello.\n/exit\nnot read\n",
                              str(chat_model), "--max-new-tokens", "6", "--system", "Be brief.")
    assert code == 0, err
    assert len(received) == 2  # two messages, two replies; nothing after /exit
    system = {"role": "system", "content": "Be brief."}
    first = [system, {"role": "user", "content": "Where is the Eiffel Tower?"}]
    [reply1] = replies(chat_model, [first], 6)
    second = [*first, {"role": "assistant", "content": reply1}, {"role": "user", "content": "Say hello."}]
    assert received[0] == render_prompt(tok, first)
    assert received[1] == render_prompt(tok, second)  # the second turn's prompt holds the first turn
    [reply2] = replies(chat_model, [second], 6)
    assert out == f"{reply1}\n{reply2}\n"  # plain stdout when not a terminal


def test_reset_forgets_the_conversation_and_end_of_input_ends_the_chat(chat_model: Path, received: list[list[int]],
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(chat_model))
    code, _, err = run_chat(monkeypatch, capsys, "Say hello.\n/reset\nWhere is the Eiffel Tower?", str(chat_model),
                            "--max-new-tokens", "3")
    assert code == 0, err
    assert received[1] == render_prompt(tok, [{"role": "user", "content": "Where is the Eiffel Tower?"}])


def test_the_oldest_turns_leave_the_prompt_when_it_outgrows_the_context(chat_model: Path) -> None:
    from tuneforge.cli.chat import ChatSession
    from tuneforge.inference.predictor import load_base_predictor

    p = load_base_predictor(chat_model, "generation")
    session = ChatSession(p.model, p.tokenizer, GenerationOptions(max_new_tokens=180), system="Be brief.")
    assert session.prompt_budget == 256 - 180
    history = []
    for i in range(6):
        history += [{"role": "user", "content": f"Question number {i}?"},
                    {"role": "assistant", "content": f"Answer number {i}."}]
    ids, dropped = session.prompt_ids([*history, {"role": "user", "content": "And now?"}])
    assert dropped > 0 and dropped % 2 == 0 and len(ids) <= session.prompt_budget
    kept = history[dropped:]
    assert ids == render_prompt(p.tokenizer, [{"role": "system", "content": "Be brief."}, *kept,
                                              {"role": "user", "content": "And now?"}])
    with pytest.raises(ConfigError, match="shorter message"):
        session.prompt_ids([{"role": "user", "content": "word " * 300}])


def test_a_message_too_long_for_the_context_is_reported_and_the_chat_goes_on(
        chat_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_chat(monkeypatch, capsys, "word " * 300 + "\nSay hello.\n", str(chat_model),
                              "--max-new-tokens", "3")
    assert code == 0 and "tokens" in err and "Traceback" not in err
    assert out.count("\n") == 1  # the second message was answered


def test_bad_generation_options_are_refused_before_the_chat_starts(chat_model: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_chat(monkeypatch, capsys, "Hi\n", str(chat_model), "--temperature", "2.5", "--top-p", "0")
    assert code == 2 and "temperature" in err and "top_p" in err


def test_generation_flags_are_refused_for_a_model_that_does_not_generate() -> None:
    from tuneforge.cli.predict import _generation_flags
    from tuneforge.tasks import get_task

    with pytest.raises(ConfigError, match="--temperature, --stop: generation options apply to generation models"):
        _generation_flags(get_task("classification"), {"temperature": 0.5, "stop": ["x"], "seed": None})
    assert _generation_flags(get_task("classification"), {"temperature": None, "stop": []}) == {}
    assert _generation_flags(get_task("generation"), {"top_k": 5, "stop": ["x"]}) == {"top_k": 5, "stop": ["x"]}


@pytest.fixture(scope="module")
def chat_run(chat_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder (full fine-tuning, one epoch) trained from the tiny model."""
    folder = tmp_path_factory.mktemp("chat-run")
    rows = [{"messages": [{"role": "user", "content": f"Say {w}."}, {"role": "assistant", "content": w}]}
            for w in ("hello", "bye", "yes", "no") * 3]
    data = folder / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run = folder / "run"
    code = main(["train", "--task", "generation", "--data", str(data), "--base-model", str(chat_model), "--output",
                 str(run), "--method", "full", "--epochs", "1", "--batch-size", "4", "--precision", "fp32"])
    assert code == 0
    return run


def test_predict_and_chat_on_a_run_feed_the_model_render_prompt_ids(chat_run: Path, received: list[list[int]],
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    tmp_path: Path) -> None:
    from tuneforge.inference import load_predictor

    tok = load_predictor(chat_run).tokenizer
    capsys.readouterr()
    code = main(["predict", str(chat_run), "Say hello.", "--max-new-tokens", "4", "--temperature", "0.8",
                 "--seed", "1", "--stop", "zz", "--stop", "qq"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("Say hello.\n")
    rows = [{"messages": [{"role": "user", "content": "Say yes."}]}, {"messages": [{"role": "user", "content": "Hi"}]}]
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code = main(["predict", str(chat_run), "--data", str(data), "-o", str(tmp_path / "preds.jsonl"),
                 "--max-new-tokens", "3"])
    assert code == 0
    preds = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [set(p) for p in preds] == [{"text", "finish_reason", "prompt_tokens", "completion_tokens"}] * 2
    code, _, err = run_chat(monkeypatch, capsys, "Say no.\n", str(chat_run), "--max-new-tokens", "3")
    assert code == 0, err
    user = [{"role": "user", "content": "Say hello."}]
    assert received[0] == render_prompt(tok, user)
    assert sorted(received[1:3]) == sorted(render_prompt(tok, r["messages"]) for r in rows)
    assert received[3] == render_prompt(tok, [{"role": "user", "content": "Say no."}])
