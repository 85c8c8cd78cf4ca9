"""A run that fails before it could be resumed leaves nothing behind; bad numbers are refused with a message that
names the option, before anything is loaded or written."""

from __future__ import annotations

import pytest

from tests.conftest import write_jsonl
from tests.training.test_train_matrix import QUIET
from tuneforge import runs
from tuneforge.errors import ConfigError, RunError
from tuneforge.training import make_config, train


def _config(tmp_path, tiny_bert, rows, output, **extra):
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    return make_config({"task": "classification", "data": str(data), "base_model": str(tiny_bert),
                        "output": str(output), "epochs": 1, "batch_size": 4, "precision": "fp32", **extra})


def test_bad_method_options_leave_no_output_folder(tmp_path, tiny_bert, cls_rows):
    out = tmp_path / "runs" / "lora"
    cfg = _config(tmp_path, tiny_bert, cls_rows, out, method="lora", lora_target_modules=["no_such_layer"])
    with pytest.raises(ConfigError, match="lora"):
        train(cfg, console=QUIET)
    assert not out.exists()  # no run-config.json, no logs/, no folder


def test_a_bad_teacher_leaves_an_existing_empty_folder_empty(tmp_path, tiny_bert, cls_rows):
    out = tmp_path / "mine"
    out.mkdir()
    cfg = _config(tmp_path, tiny_bert, cls_rows, out, distill_from=str(tmp_path / "no-teacher"))
    with pytest.raises(RunError):
        train(cfg, console=QUIET)
    assert out.is_dir() and list(out.iterdir()) == []  # the user's folder stays; nothing of the run in it


def test_overwrite_that_fails_leaves_no_half_run(tmp_path, tiny_bert, cls_rows):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("an earlier run")
    cfg = _config(tmp_path, tiny_bert, cls_rows, out, method="lora", lora_target_modules=["no_such_layer"])
    with pytest.raises(ConfigError):
        train(cfg, console=QUIET, overwrite=True)
    assert not runs.has_run_config(out)


def test_a_failure_after_a_checkpoint_keeps_the_run_resumable(tmp_path, tiny_bert, cls_rows):
    out = tmp_path / "run"
    cfg = _config(tmp_path, tiny_bert, cls_rows * 4, out, epochs=2, logging_steps=5)  # 12 steps an epoch

    def fail_in_epoch_two(event):
        if event.get("step", 0) >= 15:  # checkpoint-12 was saved at the end of epoch one
            raise RuntimeError("the worker lost its GPU")

    with pytest.raises(RuntimeError, match="lost its GPU"):
        train(cfg, console=QUIET, on_event=fail_in_epoch_two)
    assert runs.has_run_config(out) and runs.complete_checkpoints(runs.checkpoints_dir(out))
    result = train(cfg, console=QUIET, resume=True)
    assert result.manifest["training"]["steps"] == 24 and not runs.has_run_config(out)


def test_a_batch_size_of_zero_is_a_clear_config_error():
    with pytest.raises(ConfigError) as e:
        make_config({"task": "classification", "data": "d", "output": "o", "batch_size": 0})
    assert e.value.problems == ["batch_size: must be greater than or equal to 1 (got 0)"]


def test_pretrain_refuses_bad_numbers_before_loading_anything(tmp_path):
    from tuneforge.training.pretrain import pretrain

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one text\nanother text\n")
    with pytest.raises(ConfigError) as e:  # the base model does not exist: it is never looked up
        pretrain(data=corpus, base_model="no-such-model", output=tmp_path / "out", batch_size=0, epochs=0,
                 mlm_probability=1.5, console=QUIET)
    assert [p.split(":")[0] for p in e.value.problems] == ["epochs", "batch_size", "mlm_probability"]
    assert not (tmp_path / "out").exists()
