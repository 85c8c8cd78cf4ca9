"""Ray Train and Ray Tune on a local Ray started by this module: data-parallel training with two workers gives a
run folder laid out as a local run's that predicts; a worker killed mid-training is replaced and training resumes
from the last checkpoint (the repeated steps counted); a Ray Tune search keeps its best trial's run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tests.training.test_train_matrix import QUIET

pytest.importorskip("ray.train", reason="the ray extra (ray[train,tune]) is not installed")
pytest.importorskip("ray.tune", reason="the ray extra (ray[train,tune]) is not installed")

from transformers import TrainerCallback  # noqa: E402

from tuneforge.inference import load_predictor  # noqa: E402
from tuneforge.training import make_config  # noqa: E402
from tuneforge.training import train as train_here  # noqa: E402
from tuneforge.training.distributed import search_on_ray, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # each test starts Ray workers: tens of seconds on a small machine


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import ray

    from tuneforge.training.distributed.cluster import private_token, worker_env

    os.environ.pop("RAY_ADDRESS", None)
    private_token()  # no ~/.ray/auth_token left behind (it would change a later `ray start` on this machine)
    env = {**worker_env(), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    yield
    ray.shutdown()
    # a later ray.init (Flower's simulation) must not find this cluster's address; the token stays: Ray keeps the
    # first one it read for the whole process
    os.environ.pop("RAY_ADDRESS", None)


def _values(tmp_path: Path, tiny_bert: Path, rows: list[dict], out: str, **extra) -> dict:
    data = write_jsonl(tmp_path / "train.jsonl", rows * 4)
    dev = write_jsonl(tmp_path / "dev.jsonl", rows)
    return {"task": "classification", "data": str(data), "eval_data": str(dev), "base_model": str(tiny_bert),
            "output": str(tmp_path / out), "epochs": 1, "batch_size": 4, "precision": "fp32", "logging_steps": 2,
            **extra}


class KillRankOneOnce(TrainerCallback):
    """Kills worker 1's process at step ``step`` of the first attempt (a marker file says it happened)."""

    def __init__(self, marker: Path, step: int) -> None:
        self.marker, self.step = marker, step

    def on_step_end(self, args, state, control, **kw):
        import ray.train

        if state.global_step == self.step and ray.train.get_context().get_world_rank() == 1 \
                and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), 9)


def test_two_workers_lay_out_a_local_run_and_a_killed_worker_resumes_from_the_last_checkpoint(
        tmp_path, tiny_bert, cls_rows):
    # one Ray Train run (each costs tens of seconds here) shows both: the folder of a local run, and fault tolerance
    events: list[dict] = []
    marker = tmp_path / "killed"
    extra = dict(epochs=2, eval_every=3, early_stopping_patience=None)
    cfg = make_config(_values(tmp_path, tiny_bert, cls_rows, "run", executor="ray", workers=2, max_failures=1,
                              **extra))
    result = train(cfg, console=QUIET, on_event=events.append, callbacks=[KillRankOneOnce(marker, 5)])
    local = train_here(make_config(_values(tmp_path, tiny_bert, cls_rows, "local", **extra)), console=QUIET)
    out = tmp_path / "run"
    assert sorted(os.listdir(out)) == sorted(os.listdir(local.output))  # the same files, no Ray leftovers
    assert sorted(os.listdir(out / "logs")), "TensorBoard logs are in the run folder"
    man = result.manifest
    assert man["distributed"]["workers"] == 2 and man["distributed"]["backend"] == "gloo"
    assert man["config"]["output"] == str(out)
    # batch 4 is the examples per step: 2 per worker, so the 48 examples take a local run's 12 steps an epoch
    assert man["distributed"]["batch_size_per_worker"] == 2 and man["resolved"]["batch_size"] == 4
    assert man["training"]["steps"] == 24 == local.manifest["training"]["steps"]  # 48 examples, 4 a step, 2 epochs
    metrics = [e for e in events if e["type"] == "metrics"]
    assert any("eval_accuracy" in e for e in metrics) and any("loss" in e for e in metrics)
    assert result.metrics is not None and 0 <= result.metrics["accuracy"] <= 1
    assert marker.exists(), "the worker was killed"
    dist = man["distributed"]
    assert dist["attempts"] == 2 and dist["restarts"] == 1
    # checkpoints at steps 3, 6, ...: killed after step 5, resumed from 3, so steps 4 and 5 ran twice
    attempts = [e for e in events if e["type"] == "attempt"]
    assert [a["resumed_from_step"] for a in attempts] == [0, 3]
    assert dist["steps_repeated"] == 2 and dist["steps_run"] == 26
    assert load_predictor(out).predict(["boring"])[0]["label"] in {"positive", "negative"}


def test_a_ray_tune_search_keeps_its_best_trial_run(tmp_path, tiny_bert, cls_rows):
    events: list[dict] = []
    values = _values(tmp_path, tiny_bert, cls_rows, "unused")
    values.pop("output")
    best = search_on_ray(values, trials=2, parallel=2, output=tmp_path / "search", console=QUIET,
                         on_event=events.append)
    run = Path(best["run"])
    assert run.parent == tmp_path / "search" and (run / "tuneforge.json").is_file()
    assert json.loads((tmp_path / "search" / "best.json").read_text())["value"] == best["value"]
    assert set(best["params"]) >= {"learning_rate", "batch_size", "warmup_ratio", "weight_decay"}
    assert best["trials"]["complete"] + best["trials"]["pruned"] == 2
    finished = {e["trial"] for e in events if e["status"] in ("finished", "stopped")}
    assert len(finished) == 2
    assert load_predictor(run).predict(["good fun"])[0]["label"] in {"positive", "negative"}
