"""Differentially private training (``--dp-epsilon``) on the tiny BERT: the spent ε stays within the target and is
what Opacus' own accountant gives for the recorded noise multiplier, sample rate and steps; each example's gradient
is clipped before the noise; methods, tasks and options DP cannot train are refused by name before anything is
written; the run folder predicts and evaluates like any run."""

from __future__ import annotations

import json
import math

import pytest
from rich.console import Console

from tests.conftest import write_jsonl
from tuneforge.errors import ConfigError
from tuneforge.inference import load_predictor
from tuneforge.training import make_config, train

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115
SENTENCES = {"positive": ["a good movie", "great fun film", "i love this film", "very good", "a great film",
                          "good fun"],
             "negative": ["a bad movie", "awful and boring", "i hate this film", "very bad", "not good",
                          "boring film"]}


def _config(tmp_path, tiny_bert, rows, *, name="run", dev=True, **extra):
    data = write_jsonl(tmp_path / f"{name}-train.jsonl", rows)
    values = {"task": "classification", "data": str(data), "base_model": str(tiny_bert),
              "output": str(tmp_path / name), "epochs": 2, "batch_size": 4, "learning_rate": 1e-3,
              "dp_epsilon": 8.0, "dp_delta": 1e-3, "dp_accountant": "rdp", **extra}
    if dev:
        values["eval_data"] = str(write_jsonl(tmp_path / f"{name}-dev.jsonl", rows[:6]))
    return make_config(values)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_bert):
    rows = [{"text": t, "label": lab} for lab, texts in SENTENCES.items() for t in texts] * 3  # 36 examples
    tmp = tmp_path_factory.mktemp("dp")
    return train(_config(tmp, tiny_bert, rows, method="lora"), console=QUIET)


def test_spent_epsilon_is_within_the_target_and_is_opacus_accounting(lora_run):
    from opacus.accountants import create_accountant
    from opacus.accountants.utils import get_noise_multiplier

    privacy = json.loads((lora_run.output / "tuneforge.json").read_text())["privacy"]
    assert privacy["accountant"] == "rdp" and privacy["delta"] == 1e-3 and privacy["max_grad_norm"] == 1.0
    # 36 examples in expected batches of 4: 9 steps an epoch, 2 epochs
    assert privacy["sample_rate"] == pytest.approx(1 / 9) and privacy["planned_steps"] == 18
    assert privacy["steps"] == 18
    assert 0 < privacy["epsilon"] <= 8.0
    accountant = create_accountant("rdp")
    accountant.history = [(privacy["noise_multiplier"], privacy["sample_rate"], privacy["steps"])]
    assert privacy["epsilon"] == pytest.approx(accountant.get_epsilon(privacy["delta"]), rel=1e-5)
    # the noise multiplier is the one that spends the target over the planned steps
    sigma = get_noise_multiplier(target_epsilon=8.0, target_delta=1e-3, sample_rate=privacy["sample_rate"],
                                 steps=privacy["planned_steps"], accountant="rdp")
    assert privacy["noise_multiplier"] == pytest.approx(sigma)
    assert privacy["epsilon"] > 7.5  # the whole budget is used when the run takes every planned step


def test_the_private_run_folder_predicts_and_has_its_dev_report(lora_run):
    man = lora_run.manifest
    assert man["method"] == "lora" and man["resolved"]["precision"] == "fp32"
    assert math.isfinite(man["training"]["final_loss"]) and man["training"]["steps"] == 18
    assert 0.0 <= man["metrics"]["dev"]["accuracy"] <= 1.0
    assert (lora_run.output / "adapter_model.safetensors").exists()
    assert not (lora_run.output / "checkpoints").exists()
    out = load_predictor(lora_run.output).predict(["a good film", "a bad film"])
    assert [set(o["scores"]) for o in out] == [{"positive", "negative"}] * 2


def test_each_examples_gradient_is_clipped_before_the_noise(tmp_path, tiny_bert, cls_rows, monkeypatch):
    """With a clipping norm far below the raw gradients, the sum over a batch of the clipped per-example
    gradients (before the noise) is at most batch x C: without per-example clipping it is orders larger."""
    from opacus.optimizers import DPOptimizer

    seen: list[tuple[float, float, int]] = []
    add_noise = DPOptimizer.add_noise

    def recording(self):
        assert isinstance(self, DPOptimizer)
        raw = [g.reshape(len(g), -1) for g in self.grad_samples]
        if raw and len(raw[0]):
            per_example = sum((g * g).sum(1) for g in raw).sqrt()
            summed = math.sqrt(sum(float((p.summed_grad ** 2).sum()) for p in self.params))
            seen.append((float(per_example.max()), summed, len(raw[0])))
        return add_noise(self)

    monkeypatch.setattr(DPOptimizer, "add_noise", recording)
    c = 1e-3
    result = train(_config(tmp_path, tiny_bert, cls_rows * 2, dev=False, method="full", epochs=1,
                           dp_max_grad_norm=c), console=QUIET)
    assert result.manifest["privacy"]["max_grad_norm"] == c and seen
    for raw_max, summed, batch in seen:
        assert raw_max > 100 * c  # the raw gradients are far above the clipping norm ...
        assert summed <= batch * c * (1 + 1e-4)  # ... and each counted at most C
    # full fine-tuning under DP: every embedding table stays fixed
    cfg = json.loads((result.output / "tuneforge.json").read_text())
    assert cfg["training"]["trainable_parameters"] < cfg["training"]["parameters"]


def test_full_fine_tuning_keeps_the_embeddings_frozen(tmp_path, tiny_bert, cls_rows):
    from safetensors.torch import load_file
    from transformers import AutoModel

    result = train(_config(tmp_path, tiny_bert, cls_rows * 2, dev=False, method="full", learning_rate=1e-2,
                           freeze_layers=0), console=QUIET)
    saved = load_file(str(result.output / "model.safetensors"))
    base = AutoModel.from_pretrained(str(tiny_bert)).state_dict()
    moved = {k for k, v in base.items() if f"bert.{k}" in saved and not saved[f"bert.{k}"].equal(v)}
    assert moved and not any(k.startswith("embeddings.") for k in moved)
    assert any(k.startswith("encoder.layer.0.") for k in moved)


def test_ner_trains_privately(tmp_path, tiny_bert, ner_rows):
    cfg = _config(tmp_path, tiny_bert, ner_rows, task="ner", method="lora", dev=False)
    result = train(cfg, console=QUIET)
    assert 0 < result.manifest["privacy"]["epsilon"] <= 8.0
    out = load_predictor(result.output).predict(["john lives in paris"])[0]
    assert "entities" in out


def test_poisson_sampling_takes_noisy_steps_on_empty_batches(tmp_path, tiny_bert, cls_rows, monkeypatch):
    """Batch 1 of 12 examples: a step's Poisson batch is empty with probability (11/12)^12 = 0.35. Such a step
    still counts (and adds noise), so the run takes every planned step."""
    import tuneforge.training.privacy as privacy

    sizes: list[int] = []
    step = privacy._private_step

    def counting(model, optimizer, batch, p):
        sizes.append(len(batch["labels"]))
        return step(model, optimizer, batch, p)

    monkeypatch.setattr(privacy, "_private_step", counting)
    result = train(_config(tmp_path, tiny_bert, cls_rows, dev=False, batch_size=1, epochs=1), console=QUIET)
    assert len(sizes) == result.manifest["privacy"]["steps"] == 12
    assert 0 in sizes and sum(sizes) > 0


@pytest.mark.parametrize(("extra", "named"), [
    ({"method": "setfit"}, "method setfit cannot be trained with differential privacy"),
    ({"method": "zeroshot"}, "method zeroshot cannot be trained"),
    ({"method": "ia3"}, "method ia3 cannot be trained"),
    ({"method": "adalora"}, "method adalora cannot be trained"),
    ({"task": "qa"}, "supports classification, ner, not qa"),
    ({"augment": "eda"}, "augment: cannot be combined with --dp-epsilon"),
    ({"adversarial": "fgm"}, "adversarial: cannot be combined"),
    ({"grad_accum": 2}, "give a larger --batch-size"),
    ({"freeze_embeddings": False}, "freeze_embeddings: a differentially private run keeps the embeddings frozen"),
    ({"precision": "bf16"}, "precision: a differentially private run trains in fp32"),
])
def test_what_dp_cannot_train_is_refused_by_name(tmp_path, tiny_bert, cls_rows, extra, named):
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, tiny_bert, cls_rows, **extra)
    assert named in str(e.value)


def test_dp_options_need_an_epsilon_and_valid_values(tmp_path, tiny_bert, cls_rows):
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, tiny_bert, cls_rows, dp_epsilon=None, dp_max_grad_norm=0.5)
    assert "dp_max_grad_norm: applies to differentially private training" in str(e.value)
    assert "dp_delta: applies" in str(e.value)
    for bad in ({"dp_epsilon": 0}, {"dp_delta": 1.5}, {"dp_delta": 0}, {"dp_accountant": "gdp"}):
        with pytest.raises(ConfigError) as e:
            _config(tmp_path, tiny_bert, cls_rows, **bad)
        assert next(iter(bad)) in str(e.value)


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """``tuneforge ARGS`` in this process (a subprocess would pay the imports again): exit code, stdout, stderr,
    each with its line wrapping undone."""
    from tuneforge.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, " ".join(captured.out.split()), " ".join(captured.err.split())


def test_methods_and_tasks_dp_cannot_train_are_refused_before_anything_is_written(tmp_path, tiny_bert, cls_rows,
                                                                                  capsys):
    data = write_jsonl(tmp_path / "train.jsonl", cls_rows)
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--task", "classification", "--data", str(data), "--base-model",
                        str(tiny_bert), "--method", "setfit", "--dp-epsilon", "8", "--output", str(out))
    assert code == 2 and "setfit cannot be trained with differential privacy" in err
    assert not out.exists()
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                               {"role": "assistant", "content": "hello"}]}] * 4)
    code, _, err = _cli(capsys, "train", "--data", str(chat), "--dp-epsilon", "8", "--output", str(out))
    assert code == 2 and "not generation" in err
    assert not out.exists()


def test_the_command_line_prints_the_spent_budget(tmp_path, tiny_bert, cls_rows, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", cls_rows * 2)
    out = tmp_path / "run"
    code, stdout, err = _cli(capsys, "train", "--task", "classification", "--data", str(data), "--base-model",
                             str(tiny_bert), "--method", "lora", "--epochs", "1", "--batch-size", "4", "--dp-epsilon",
                             "3", "--dp-accountant", "rdp", "--output", str(out))
    assert code == 0, err[-3000:]
    privacy = json.loads((out / "tuneforge.json").read_text())["privacy"]
    # no --dp-delta: 1/(10 n)
    assert privacy["delta"] == pytest.approx(1 / 240) and privacy["delta_source"] == "1/(10 n)"
    assert f"ε = {privacy['epsilon']:.3f} spent of 3" in stdout
