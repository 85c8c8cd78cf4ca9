"""`tuneforge train`'s flags are generated from the training config (issue 16, issue 17 item 12): every option has a
flag, the flags that existed keep their spelling, and an explicit flag beats the --config file, which beats the
default."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tuneforge.cli import main
from tuneforge.cli.train import train_command
from tuneforge.training.config import TrainConfig

# `tuneforge train --help` before the flags were generated: every declaration must still be there
OLD_FLAGS = [
    "--task", "-t", "--data", "--eval-data", "--base-model", "--output", "-o", "--config", "--epochs", "--lr",
    "--batch-size", "--max-length", "--seed", "--grad-accum", "--warmup-ratio", "--weight-decay", "--patience",
    "--eval-every", "--method", "--lora-r", "--lora-alpha", "--adapter-size", "--num-virtual-tokens",
    "--sentence-encoder", "--setfit-iterations", "--setfit-max-pairs", "--label-template", "--unlabeled-data",
    "--self-training-threshold", "--adversarial", "--adversarial-epsilon", "--distill-from", "--distill-alpha",
    "--distill-temperature", "--augment", "--augment-copies", "--layer-lr-decay", "--freeze-layers", "--precision",
    "--freeze-embeddings", "--train-embeddings", "--dropout", "--label-smoothing", "--multi-label", "--single-label",
    "--lenient-bio", "--no-lenient-bio", "--text-column", "--text-pair-column", "--label-column", "--tokens-column",
    "--tags-column", "--question-column", "--context-column", "--answers-column", "--resume", "--no-resume",
    "--overwrite", "--no-overwrite", "--keep-checkpoints", "--no-keep-checkpoints",
]


@pytest.fixture(scope="module")
def command() -> Any:
    return train_command()


def declarations(command: Any) -> dict[str, list[str]]:
    return {p.name: [*p.opts, *p.secondary_opts] for p in command.params}


def test_every_training_option_has_a_flag(command):
    params = declarations(command)
    missing = [name for name in TrainConfig.model_fields if name != "columns" and name not in params]
    assert not missing, f"config fields without a train flag: {missing}"
    assert params["stride"] == ["--stride"] and params["lora_dropout"] == ["--lora-dropout"]
    assert params["warm_start_head"] == ["--warm-start-head", "--no-warm-start-head"]


def test_the_old_flags_keep_their_spelling(command):
    spelled = [d for decls in declarations(command).values() for d in decls]
    assert [f for f in OLD_FLAGS if f not in spelled] == []
    params = declarations(command)
    assert params["learning_rate"] == ["--lr"] and params["early_stopping_patience"] == ["--patience"]
    assert params["task"] == ["--task", "-t"] and params["output"] == ["--output", "-o"]
    assert params["freeze_embeddings"] == ["--freeze-embeddings", "--train-embeddings"]


def test_the_help_is_the_fields_description(command):
    helps = {p.name: p.help for p in command.params}
    assert TrainConfig.model_fields["stride"].description.rstrip(".") in helps["stride"]
    assert "linear, cosine, constant" in helps["lr_scheduler"]


@pytest.fixture
def captured(monkeypatch) -> list[Any]:
    """Replace training itself: record the config the command built (an interrupted run exits 3)."""
    seen: list[Any] = []

    def fake_train(cfg: Any, **kwargs: Any) -> Any:
        seen.append(cfg)
        return SimpleNamespace(interrupted=True)

    monkeypatch.setattr("tuneforge.training.train", fake_train)
    return seen


def test_flag_beats_config_file_beats_default(tmp_path: Path, captured, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n', encoding="utf-8")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"task: classification\ndata: {data}\noutput: {tmp_path / 'o'}\nlora_r: 8\nstride: 64\n"
                   "keep_checkpoints: true\nwarm_start_head: true\nlenient_bio: true\nepochs: 5\n", encoding="utf-8")
    code = main(["train", "--config", str(cfg), "--epochs", "2", "--no-keep-checkpoints", "--stride", "32",
                 "--no-lenient-bio", "--lora-target-modules", "query,key", "--lora-target-modules", "value",
                 "--label-descriptions", "x=an x", "--label-descriptions", "y=a y=why", "--lr-scheduler", "cosine"])
    assert code == 3, capsys.readouterr().err
    (c,) = captured
    assert c.epochs == 2 and c.stride == 32 and c.keep_checkpoints is False and c.lenient_bio is False  # flags
    assert c.lora_r == 8 and c.warm_start_head is True  # the file
    assert c.seed == 42 and c.max_grad_norm == 1.0  # defaults
    assert c.lora_target_modules == ["query", "key", "value"]
    assert c.label_descriptions == {"x": "an x", "y": "a y=why"} and c.lr_scheduler == "cosine"


def test_qa_with_a_short_max_length_is_fixed_with_stride(tmp_path: Path, captured, capsys):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"question": "q?", "context": "c", "answers": {"text": [], "answer_start": []}}\n')
    args = ["train", "--task", "qa", "--data", str(data), "--output", str(tmp_path / "o"), "--max-length", "256"]
    assert main(args) == 2
    assert "stride" in capsys.readouterr().err
    assert main([*args, "--stride", "64"]) == 3
    assert captured[0].stride == 64 and captured[0].max_length == 256


@pytest.mark.parametrize(("args", "says"), [
    (["--label-descriptions", "no-equals-sign"], "label_descriptions: 'no-equals-sign' is not KEY=VALUE"),
    (["--lr-scheduler", "sometimes"], "lr_scheduler"),
    (["--stride", "-1"], "stride"),
    (["--batch-size", "0"], "batch_size"),
])
def test_bad_generated_flags_are_refused_by_name(tmp_path: Path, captured, capsys, args, says):
    code = main(["train", "--task", "classification", "--data", str(tmp_path / "d.jsonl"), "--output",
                 str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2 and says in " ".join(err.split()) and "Traceback" not in err
    assert not captured
