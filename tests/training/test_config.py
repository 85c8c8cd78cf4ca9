import pytest

from tuneforge.errors import ConfigError
from tuneforge.training import load_config_file, make_config


def test_every_problem_reported_at_once():
    with pytest.raises(ConfigError) as e:
        make_config({"task": "sentiment", "data": "x.jsonl", "output": "o", "epochs": -1, "batch_size": 0,
                     "lerning_rate": 0.1})
    text = str(e.value)
    for field in ("task", "epochs", "batch_size", "lerning_rate"):
        assert field in text, text
    assert len(e.value.problems) == 4
    assert "classification" in text  # names the allowed values


def test_yaml_config_round_trip(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("task: ner\ndata: train.conll\noutput: runs/x\nepochs: 2\nlearning-rate: 0.0003\n")
    cfg = make_config(load_config_file(p))
    assert cfg.task == "ner" and cfg.epochs == 2 and cfg.learning_rate == 3e-4


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("task: ner\ndata: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_config_file(p)


def test_unknown_method_is_refused():
    with pytest.raises(ConfigError, match="method"):
        make_config({"task": "classification", "data": "a", "output": "b", "method": "magic"})


def test_auto_hyperparameters_follow_model_and_data_size():
    from tuneforge.tasks import get_task
    from tuneforge.training.setup import auto_hyperparameters, encoder_parameters

    minilm = {"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536}
    e5 = {**minilm, "num_hidden_layers": 12}
    base = {"hidden_size": 768, "num_hidden_layers": 12, "intermediate_size": 3072}
    assert 10e6 < encoder_parameters(minilm) < 11e6 and 80e6 < encoder_parameters(base) < 90e6
    cfg = make_config({"task": "classification", "data": "d", "output": "o"})
    task = get_task("classification")

    def hp(model, n):
        return auto_hyperparameters(cfg, n_train=n, model_config=model, model_max=512, task=task)

    assert hp(minilm, 400) == {"learning_rate": 2e-4, "batch_size": 8, "max_length": 256, "freeze_layers": 2}
    assert hp(minilm, 20000)["learning_rate"] == 1e-4 and hp(minilm, 20000)["batch_size"] == 32
    assert hp(e5, 600)["learning_rate"] == 1e-4 and hp(e5, 600)["batch_size"] == 16
    assert hp(e5, 1500)["learning_rate"] == 5e-5 and hp(e5, 9600)["batch_size"] == 32
    ner = auto_hyperparameters(cfg, n_train=1350, model_config=e5, model_max=512, task=get_task("ner"))
    assert ner["learning_rate"] == 1e-4  # Weibo NER trains at 1e-4; the collapse was seen on classification
    assert hp(base, 600)["learning_rate"] == 5e-5
    explicit = make_config({"task": "classification", "data": "d", "output": "o", "learning_rate": 3e-5,
                            "batch_size": 4, "max_length": 1000})
    got = auto_hyperparameters(explicit, n_train=400, model_config=minilm, model_max=512, task=task)
    assert got == {"learning_rate": 3e-5, "batch_size": 4, "max_length": 512,  # capped by the model
                   "freeze_layers": 2}


def test_auto_freeze_only_in_short_full_runs_with_frozen_embeddings():
    from tuneforge.training.setup import SHORT_RUN_EXAMPLES, auto_freeze_layers

    minilm = {"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536}
    e5 = {**minilm, "num_hidden_layers": 12}

    def freeze(n, model=minilm, **options):
        cfg = make_config({"task": "classification", "data": "d", "output": "o", **options})
        return auto_freeze_layers(cfg, n_train=n, model_config=model)

    assert freeze(2000, epochs=1) == 2 and freeze(400, e5) == 4  # the lower third
    assert freeze(SHORT_RUN_EXAMPLES // 2, epochs=2) == 2
    assert freeze(SHORT_RUN_EXAMPLES // 2 + 1, epochs=2) == 0  # a longer run trains every layer
    assert freeze(2000, {**minilm, "num_hidden_layers": 2}) == 0  # too shallow to spare a layer
    assert freeze(2000, freeze_embeddings=False) == 0  # asked to train the bottom: train it all
    assert freeze(2000, method="lora") == 0  # LoRA never updates the encoder's own weights
    assert freeze(50_000, freeze_layers=3) == 3 and freeze(400, freeze_layers="0") == 0  # a number wins


def test_warm_start_fits_the_head_on_frozen_features(tiny_bert, cls_rows):
    import torch
    from transformers import AutoTokenizer

    from tuneforge.tasks import get_task
    from tuneforge.training.warm_start import warm_start_classifier

    task = get_task("classification")
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    labels = task.label_list(cls_rows, False)
    model = task.build_model(tiny_bert, labels, multi_label=False)
    enc = task.encode(cls_rows, tok, labels, max_length=32)
    encoder_before = {k: v.clone() for k, v in model.bert.encoder.state_dict().items()}
    loss = warm_start_classifier(model, enc.features, task.collator(tok), multi_label=False, seed=0)
    assert loss is not None and loss < 0.65  # below ln 2, where an untrained head on two balanced classes starts
    for k, v in model.bert.encoder.state_dict().items():  # only the head moved
        assert torch.equal(v, encoder_before[k])


def test_the_task_is_checked_against_the_registry_not_a_fixed_list():
    from tuneforge.tasks import register_task, unregister_task
    from tuneforge.tasks.classification.task import ClassificationTask

    class Topics(ClassificationTask):
        name = "topics"

    values = {"task": "topics", "data": "d", "output": "o"}
    with pytest.raises(ConfigError, match="'topics' is not a task"):
        make_config(values)
    register_task(Topics())
    try:
        assert make_config({**values, "method": "setfit"}).task == "topics"  # a sequence-level task: setfit fits
        with pytest.raises(ConfigError, match="does not support ner"):
            make_config({**values, "task": "ner", "method": "setfit"})
    finally:
        unregister_task("topics")


def test_an_unknown_option_suggests_the_closest_one():
    with pytest.raises(ConfigError, match=r"lerning_rate: unknown option \(did you mean learning_rate\?\)"):
        make_config({"task": "classification", "data": "d", "output": "o", "lerning_rate": 0.1})
