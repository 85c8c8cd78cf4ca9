"""A run stopped mid-way (a kill, or a cancel from a job queue) continues from its checkpoint."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tests.training.test_train_matrix import QUIET
from tuneforge.errors import RunError
from tuneforge.inference import load_predictor
from tuneforge.training import make_config, train


def test_stop_then_resume_finishes_the_same_run(tmp_path, tiny_bert, cls_rows):
    data = write_jsonl(tmp_path / "train.jsonl", cls_rows * 4)
    cfg = make_config({"task": "classification", "data": str(data), "base_model": str(tiny_bert),
                       "output": str(tmp_path / "run"), "epochs": 3, "batch_size": 4, "precision": "fp32"})
    steps = {"n": 0}

    def stop_after_7() -> bool:
        steps["n"] += 1
        return steps["n"] >= 7

    first = train(cfg, console=QUIET, should_stop=stop_after_7)
    assert first.interrupted
    run = tmp_path / "run"
    assert (run / "run-config.json").exists() and not (run / "tuneforge.json").exists()
    assert list((run / "checkpoints").glob("checkpoint-7"))
    with pytest.raises(RunError, match="no finished TuneForge model"):
        load_predictor(run)
    with pytest.raises(RunError, match="--resume"):  # a new run must not silently reuse the folder
        train(cfg, console=QUIET)
    second = train(cfg, console=QUIET, resume=True)
    assert not second.interrupted
    man = json.loads((run / "tuneforge.json").read_text())
    assert man["training"]["steps"] == 36  # 48 examples / 4 per step * 3 epochs: continued, not restarted
    assert load_predictor(run).predict(["good"])[0]["label"] in {"positive", "negative"}
    with pytest.raises(RunError, match="already holds a trained model"):
        train(cfg, console=QUIET)


def test_a_checkpoint_cut_off_while_saving_is_skipped(tmp_path):
    from tuneforge.runs import last_complete_checkpoint

    ck = tmp_path / "checkpoints"
    assert last_complete_checkpoint(ck) is None
    for step, complete in ((5, True), (10, True), (15, False)):
        d = ck / f"checkpoint-{step}"
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"x")
        if complete:
            (d / "trainer_state.json").write_text("{}")
    (ck / "runs").mkdir()
    assert last_complete_checkpoint(ck) == str(ck / "checkpoint-10")
    assert not (ck / "checkpoint-15").exists() and (ck / "checkpoint-5").exists()
