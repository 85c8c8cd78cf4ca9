"""Each method owns its options (``methods/<method>/config.py``); the run configuration carries them flat, and a
method reads its own as one object. Which tasks a method trains is decided by the task's attributes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tuneforge.errors import ConfigError
from tuneforge.methods import AllMethodOptions, MethodOptions, get_method, method_names
from tuneforge.methods.bottleneck.config import AdapterOptions
from tuneforge.methods.peft.config import LoraOptions, PromptOptions
from tuneforge.methods.setfit.config import SetFitOptions
from tuneforge.methods.zeroshot.config import ZeroShotOptions
from tuneforge.training import TrainConfig, load_config_file, make_config

BASE = {"task": "classification", "data": "d.jsonl", "output": "o"}


def test_every_registered_method_has_its_options_in_the_flat_config():
    for name in method_names():
        options = get_method(name).options_class
        assert issubclass(AllMethodOptions, options), name
        assert set(options.model_fields) <= set(TrainConfig.model_fields), name
        for field, info in options.model_fields.items():  # the description is the --help text
            assert info.description and TrainConfig.model_fields[field].description == info.description


def test_a_method_reads_its_own_options_as_one_object(tmp_path):
    yaml = tmp_path / "run.yaml"
    yaml.write_text("task: ner\ndata: d.conll\noutput: o\nmethod: lora\nlora_r: 8\nlora-alpha: 32\n"
                    "lora_target_modules: [query, value]\nadapter_size: 16\n")
    cfg = make_config(load_config_file(yaml))
    lora = get_method("lora").options(cfg)
    assert type(lora) is LoraOptions
    assert (lora.lora_r, lora.lora_alpha, lora.lora_target_modules) == (8, 32, ["query", "value"])
    assert get_method("adalora").options(cfg) == lora
    assert get_method("adapter").options(cfg) == AdapterOptions(adapter_size=16)
    assert get_method("prompt_tuning").options(cfg) == PromptOptions()
    assert get_method("full").options(cfg) == MethodOptions()
    setfit = get_method("setfit").options(make_config({**BASE, "method": "setfit", "setfit_iterations": 3,
                                                       "label_descriptions": {"pos": "a great film"}}))
    assert type(setfit) is SetFitOptions and setfit.setfit_iterations == 3
    assert setfit.label_descriptions == {"pos": "a great film"}
    zeroshot = get_method("zeroshot").options(make_config({**BASE, "method": "zeroshot", "label_template": "{label}!"}))
    assert type(zeroshot) is ZeroShotOptions and zeroshot.label_template == "{label}!"
    assert not hasattr(zeroshot, "setfit_iterations")


def test_method_option_limits_are_checked_with_the_rest_of_the_config():
    with pytest.raises(ConfigError) as e:
        make_config({**BASE, "method": "lora", "lora_r": 0, "adapter_size": 10**6, "epochs": 0})
    text = str(e.value)
    assert "lora_r" in text and "adapter_size" in text and "epochs" in text and len(e.value.problems) == 3


def _task(**attrs):
    defaults = {"name": "toy", "generative": False, "per_token": False, "sequence_level": True, "labelled": True}
    return SimpleNamespace(**{**defaults, **attrs})


def test_supported_tasks_follow_task_attributes_not_names():
    tagger = _task(per_token=True, sequence_level=False)
    spans = _task(per_token=True, sequence_level=False, labelled=False)
    writer = _task(generative=True, sequence_level=False)
    assert get_method("full").supports(tagger) and get_method("lora").supports(spans)
    assert not get_method("prompt_tuning").supports(tagger) and get_method("prompt_tuning").supports(_task())
    assert get_method("setfit").supports(_task()) and not get_method("setfit").supports(tagger)
    assert not get_method("zeroshot").supports(_task(labelled=False))
    # a generative task (a causal LM) trains with full fine-tuning, LoRA or DPO only; DPO trains nothing else
    assert sorted(m for m in method_names() if get_method(m).supports(writer)) == ["dpo", "full", "lora"]
    assert not get_method("dpo").supports(_task()) and not get_method("dpo").supports(tagger)


def test_sentence_methods_refuse_multi_label_with_one_message():
    for method in ("setfit", "zeroshot"):
        with pytest.raises(ConfigError) as e:
            make_config({**BASE, "method": method, "multi_label": True})
        assert e.value.problems == [f"multi_label: {method} is single-label here (use --method full or lora for "
                                    "multi-label)"]
