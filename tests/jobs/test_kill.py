"""Killing a worker mid-training loses no job and no data: another worker takes the job over once the lease
expires, and it completes from the last checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from tests.service_support import jsonl, new_tenant, rows
from tuneforge.inference import load_predictor
from tuneforge.jobs.executors import ThreadExecutor
from tuneforge.jobs.worker import Worker
from tuneforge.store.models import Checkpoint, File, Job, JobEvent, Model

ROOT = Path(__file__).resolve().parents[2]


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie waits for a reaper but runs no more


def test_killing_a_worker_mid_training_loses_no_job_and_no_data(sqlite_env, tiny_bert, tmp_path):
    env = sqlite_env
    _, key = new_tenant(env.sessions)
    data = jsonl(rows())  # 12 examples, batch 4: 3 steps per epoch, a checkpoint at steps 3, 6, 9
    job_id = env.job(key, data=data, epochs=3, options={"batch_size": 4, "logging_steps": 1, "precision": "fp32"})
    log = open(tmp_path / "doomed-worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "tests.jobs.killable_worker", env.settings.db_url,
                             str(env.settings.data_dir), str(tiny_bert)], cwd=ROOT, stdout=log, stderr=log,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        def checkpointed() -> bool:
            assert proc.poll() is None, (tmp_path / "doomed-worker.log").read_text()[-3000:]
            with env.sessions() as s:
                return s.scalar(select(Checkpoint.id).where(Checkpoint.job_id == job_id)) is not None

        _wait(checkpointed, 180, "the first checkpoint")
        with env.sessions() as s:
            started = [e for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id))
                       if e.message.startswith("Training started")]
            assert s.get(Job, job_id).status == "running"
        child = started[0].data["pid"]
        assert child != proc.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    _wait(lambda: _gone(child), 30, "the training process to die with its worker")

    with env.sessions() as s:
        metrics_before = [e.data["step"] for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id))
                          if e.type == "metrics" and "loss" in (e.data or {})]
    assert metrics_before and max(metrics_before) >= 3

    rescuer = Worker(sessions=env.sessions, settings=env.settings, storage=env.storage, executor=ThreadExecutor(),
                     name="rescuer")
    deadline = time.monotonic() + 180
    while True:
        rescuer.tick()
        with env.sessions() as s:
            status = s.get(Job, job_id).status
        if status in ("succeeded", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, f"job still {status}"
        time.sleep(0.1)
    rescuer.shutdown()

    with env.sessions() as s:
        job = s.get(Job, job_id)
        events = list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)))
        ckpts = {(c.step, c.attempt) for c in s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id))}
        model = s.get(Model, job.fine_tuned_model) if job.fine_tuned_model else None
        upload = s.get(File, job.training_file_id)
    assert job.status == "succeeded", job.error_message
    assert job.failures == 1 and job.attempt == 3  # validation, the killed attempt, the rescue
    msgs = [e.message for e in events]
    assert any("doomed-worker stopped renewing its lease" in m for m in msgs)
    resumed = [e for e in events if "Resuming from the checkpoint" in e.message]
    assert len(resumed) == 1 and resumed[0].attempt == 3 and resumed[0].data["resumed_from_step"] == 3
    # nothing recorded before the kill was lost: its metrics and its checkpoint are still there
    assert all(any(e.type == "metrics" and e.attempt == 2 and e.data["step"] == s for e in events)
               for s in metrics_before)
    assert (3, 2) in ckpts and {step for step, _ in ckpts} == {3, 6, 9}
    assert not (env.storage.local_path(model.storage_key) / "checkpoints").exists()  # not shipped with the model
    manifest = json.loads((env.storage.local_path(model.storage_key) / "tuneforge.json").read_text())
    assert manifest["training"]["steps"] == 9  # finished from step 3, not restarted and not short
    stored = env.storage.local_path(upload.storage_key).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == upload.sha256 and stored == data
    assert not (env.settings.work_dir / job_id).exists()
    pred = load_predictor(env.storage.local_path(model.storage_key)).predict(["a good movie"])
    assert pred[0]["label"] in {"positive", "negative"}
