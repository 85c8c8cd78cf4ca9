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
