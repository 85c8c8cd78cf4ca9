"""The worker: several jobs at once, validation before queueing, crashes retried, cancel and pause reaching a
running training, resume from the checkpoint."""

from __future__ import annotations

import json
import os
import time
import types
from collections.abc import Callable

import pytest
from sqlalchemy import select

from tests.jobs import fakes
from tests.service_support import jsonl, new_tenant, rows
from tuneforge import runs
from tuneforge.inference import load_predictor
from tuneforge.jobs.executors import ProcessExecutor, ThreadExecutor
from tuneforge.jobs.service import cancel_job, pause_job, resume_job
from tuneforge.jobs.worker import Worker
from tuneforge.store.models import Checkpoint, Job, JobEvent, Model

FAKE_VALIDATE = "tests.jobs.fakes:ok_validator"


def _job(env, job_id: str) -> Job:
    with env.sessions() as s:
        return s.get(Job, job_id)


def _events(env, job_id: str) -> list[JobEvent]:
    with env.sessions() as s:
        return list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)))


def _tick_until(worker: Worker, cond: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        worker.tick()
        time.sleep(0.05)


def test_several_jobs_run_at_once_up_to_the_slots(sqlite_env):
    env = sqlite_env
    fakes.GATE.clear()
    fakes.STARTED.clear()
    _, key = new_tenant(env.sessions, max_concurrent_jobs=5)
    ids = [env.job(key) for _ in range(3)]
    w = Worker(sessions=env.sessions, settings=env.settings, storage=env.storage, executor=ThreadExecutor(), slots=2,
               train_runner="tests.jobs.fakes:blocking_runner", validate_runner=FAKE_VALIDATE)
    try:
        _tick_until(w, lambda: sorted(_job(env, i).status for i in ids) == ["queued", "running", "running"])
        for _ in range(5):  # the third job waits for a free slot
            w.tick()
        assert len(fakes.STARTED) == 2 and sorted(_job(env, i).status for i in ids).count("running") == 2
        fakes.GATE.set()
        _tick_until(w, lambda: all(_job(env, i).status == "succeeded" for i in ids))
    finally:
        fakes.GATE.set()
        w.shutdown()
    assert sorted(fakes.STARTED) == sorted(ids)
    with env.sessions() as s:
        assert len(list(s.scalars(select(Model)))) == 3
    assert all(any(e.type == "metrics" for e in _events(env, i)) for i in ids)


def test_a_bad_file_fails_the_job_in_validating_files_with_line_and_reason(sqlite_env):
    env = sqlite_env
    _, key = new_tenant(env.sessions)
    bad = jsonl(rows()[:4]) + b'{"text": "no label here"}\n' + jsonl(rows()[4:])
    job_id = env.job(key, data=bad)
    w = Worker(sessions=env.sessions, settings=env.settings, storage=env.storage, executor=ThreadExecutor())
    w.run_until_idle(timeout=60)
    j = _job(env, job_id)
    assert j.status == "failed" and j.error_code == "invalid_training_file" and j.error_param == "training_file"
    assert "train.jsonl" in j.error_message and "line 5" in j.error_message and "label" in j.error_message
    assert j.validated_at is None and j.started_at is None  # never queued for training
    assert not any("validated" in e.message.lower() for e in _events(env, job_id))


def test_process_executor_runs_in_a_child_and_stops_on_request():
    handle = ProcessExecutor().start("tests.jobs.fakes:stoppable_runner", types.SimpleNamespace(job_id="x"))
    deadline = time.monotonic() + 60
    events: list[dict] = []
    while not events:
        assert time.monotonic() < deadline
        events += handle.events()
        time.sleep(0.05)
    assert events[0]["data"]["pid"] == handle.pid != os.getpid()
    handle.request_stop()
    while not handle.done():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert handle.result() == {"status": "stopped"}


def test_a_crashing_training_process_is_retried_then_fails(sqlite_env):
    env = sqlite_env
    env.settings.max_attempts = 2
    _, key = new_tenant(env.sessions)
    job_id = env.job(key)
    with env.sessions() as s:
        s.get(Job, job_id).max_attempts = 2
        s.commit()
    w = Worker(sessions=env.sessions, settings=env.settings, storage=env.storage, executor=ProcessExecutor(),
               train_runner="tests.jobs.fakes:crash_runner", validate_runner=FAKE_VALIDATE)
    w.run_until_idle(timeout=120)
    j = _job(env, job_id)
    assert j.status == "failed" and j.error_code == "max_attempts_exceeded" and j.failures == 2
    assert "exit code 3" in j.error_message
    msgs = [e.message for e in _events(env, job_id)]
    assert sum("about to crash" in m for m in msgs) == 2 and any("queued again" in m for m in msgs)


def test_a_first_successful_training_is_attempt_1(sqlite_env):
    env = sqlite_env
    fakes.GATE.set()
    _, key = new_tenant(env.sessions)
    job_id = env.job(key)
    w = Worker(sessions=env.sessions, settings=env.settings, storage=env.storage, executor=ThreadExecutor(),
               train_runner="tests.jobs.fakes:blocking_runner", validate_runner=FAKE_VALIDATE)
    w.run_until_idle(timeout=60)
    j = _job(env, job_id)
    assert j.status == "succeeded" and j.training_attempt == 1
    assert j.attempt == 2  # the queue's fencing token: the validation's claim, then the training's
    msgs = [e.message for e in _events(env, job_id)]
    assert "Training started (attempt 1)." in msgs and any(m.startswith("Attempt 1: training on worker") for m in msgs)
    assert not any("attempt 2" in m.lower() for m in msgs), msgs


def test_an_unexpected_error_starting_a_training_names_no_server_path(sqlite_env):
    env = sqlite_env
    secret = env.settings.work_dir / "some" / "inner" / "folder"

    class Broken(ThreadExecutor):
        def start(self, runner, spec):
            raise OSError(f"[Errno 28] No space left on device: '{secret}'")

    _, key = new_tenant(env.sessions)
    job_id = env.job(key)
    w = Worker(sessions=env.sessions, settings=env.settings, storage=env.storage, executor=Broken(),
               validate_runner=FAKE_VALIDATE)
    w.run_until_idle(timeout=60)
    j = _job(env, job_id)
    assert j.status == "failed" and j.error_code == "max_attempts_exceeded"
    assert "OSError" in j.error_message and "No space left on device" in j.error_message
    texts = [j.error_message] + [e.message for e in _events(env, job_id)]
    assert not any(str(env.settings.data_dir) in t or "/some/inner" in t for t in texts), texts
    assert "'folder'" in j.error_message  # the last component only


# ------------------------------------------------------------------------------------------- real trainings
GATED = "tests.jobs.fakes:gated_training"  # the real training, held after step 2 of its first attempt


def _gated_job(env, key: str, epochs: int) -> str:
    # 12 examples, batch 4: 3 steps per epoch
    return env.job(key, data=jsonl(rows()), epochs=epochs,
                   options={"batch_size": 4, "logging_steps": 1, "precision": "fp32"})


def test_cancel_reaches_a_running_training(sqlite_env):
    env = sqlite_env
    _, key = new_tenant(env.sessions)
    job_id = _gated_job(env, key, epochs=3)
    w = Worker(sessions=env.sessions, settings=env.settings, storage=env.storage, executor=ThreadExecutor(),
               train_runner=GATED)
    try:
        _tick_until(w, lambda: any(e.type == "metrics" and e.data.get("step") == 1 for e in _events(env, job_id)))
        p = env.principal(key)
        with env.sessions() as s:
            assert cancel_job(s, tenant_id=p.tenant_id, job_id=job_id).status == "running"
        _tick_until(w, lambda: _job(env, job_id).status != "running", timeout=60)
    finally:
        w.shutdown()
    j = _job(env, job_id)
    assert j.status == "cancelled" and j.fine_tuned_model is None
    assert max(e.data["step"] for e in _events(env, job_id) if e.type == "metrics") == 2  # stopped, not finished
    assert not (env.settings.work_dir / job_id).exists()


def test_pause_then_resume_continues_from_the_checkpoint(sqlite_env):
    env = sqlite_env
    _, key = new_tenant(env.sessions)
    job_id = _gated_job(env, key, epochs=2)  # 6 steps
    w = Worker(sessions=env.sessions, settings=env.settings, storage=env.storage, executor=ThreadExecutor(),
               train_runner=GATED)
    p = env.principal(key)
    try:
        _tick_until(w, lambda: any(e.type == "metrics" and e.data.get("step") == 1 for e in _events(env, job_id)))
        with env.sessions() as s:
            pause_job(s, tenant_id=p.tenant_id, job_id=job_id)
        _tick_until(w, lambda: _job(env, job_id).status == "paused", timeout=60)
        with env.sessions() as s:
            ckpts = [c.step for c in s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id))]
        assert ckpts == [2], "a paused training leaves a checkpoint at the step it stopped"
        with env.sessions() as s:
            assert resume_job(s, principal=p, job_id=job_id).status == "queued"
        _tick_until(w, lambda: _job(env, job_id).status in ("succeeded", "failed"), timeout=120)
    finally:
        w.shutdown()
    j = _job(env, job_id)
    assert j.status == "succeeded", j.error_message
    assert j.failures == 0 and j.trained_tokens and j.trained_tokens > 0
    assert j.training_attempt == 2 and j.attempt == 3  # two trainings (paused, resumed); 3 claims with validation
    resumed = [e for e in _events(env, job_id) if "Resuming from the checkpoint" in e.message]
    assert len(resumed) == 1 and resumed[0].data["resumed_from_step"] == 2
    with env.sessions() as s:
        model = s.get(Model, j.fine_tuned_model)
    manifest = json.loads((env.storage.local_path(model.storage_key) / "tuneforge.json").read_text())
    assert manifest["training"]["steps"] == 6  # continued, not restarted
    metric_steps = [e.data["step"] for e in _events(env, job_id) if e.type == "metrics" and "loss" in e.data]
    assert sorted(set(metric_steps)) == [1, 2, 3, 4, 5, 6]
    # the last checkpoints are finished run folders of their own, published inside the model's key
    folder = env.storage.local_path(model.storage_key)
    kept = sorted(int(d.name.rsplit("-", 1)[1]) for d in folder.glob("ckpt-step-*"))
    assert kept and kept[-1] == 6 and len(kept) <= 3
    with env.sessions() as s:
        recorded = {c.step for c in s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id))}
    assert set(kept) <= recorded
    for step in kept:
        ck = folder / f"ckpt-step-{step}"
        m = runs.read_manifest(ck)
        assert m["checkpoint"] == {"step": step} and m["training"]["steps"] == step and m["task"] == "classification"
        assert not (ck / "optimizer.pt").exists() and not (ck / "trainer_state.json").exists()
        assert load_predictor(ck).predict(["a good movie"])[0]["label"] in {"positive", "negative"}
    done = [e for e in _events(env, job_id) if e.message.startswith("The job has successfully completed")]
    assert done[0].data["checkpoint_models"] == [f"{j.fine_tuned_model}:ckpt-step-{s}" for s in kept]


@pytest.mark.parametrize("field", ["training_file_id"])
def test_a_job_whose_file_was_removed_fails_clearly(sqlite_env, field):
    env = sqlite_env
    _, key = new_tenant(env.sessions)
    job_id = env.job(key)
    with env.sessions() as s:
        setattr(s.get(Job, job_id), field, "file-gone")
        s.commit()
    w = Worker(sessions=env.sessions, settings=env.settings, storage=env.storage, executor=ThreadExecutor())
    w.run_until_idle(timeout=30)
    j = _job(env, job_id)
    assert j.status == "failed" and "file-gone" in j.error_message


def test_a_worker_shutting_down_hands_its_job_back_without_a_failure(sqlite_env):
    env = sqlite_env
    _, key = new_tenant(env.sessions)
    job_id = _gated_job(env, key, epochs=2)
    first = Worker(sessions=env.sessions, settings=env.settings, storage=env.storage, executor=ThreadExecutor(),
                   train_runner=GATED, name="leaving")
    _tick_until(first, lambda: any(e.type == "metrics" and e.data.get("step") == 1 for e in _events(env, job_id)))
    first.shutdown()
    j = _job(env, job_id)
    assert j.status == "queued" and j.failures == 0 and j.lease_owner is None
    assert any("The worker shut down" in e.message for e in _events(env, job_id))
    second = Worker(sessions=env.sessions, settings=env.settings, storage=env.storage, executor=ThreadExecutor())
    second.run_until_idle(timeout=120)
    j = _job(env, job_id)
    assert j.status == "succeeded" and j.failures == 0
    assert any("Resuming from the checkpoint at step 2" in e.message for e in _events(env, job_id))


def test_a_job_over_the_token_quota_fails_at_validation(sqlite_env):
    env = sqlite_env
    _, key = new_tenant(env.sessions, trained_tokens_per_month=50)
    job_id = env.job(key, epochs=3)
    Worker(sessions=env.sessions, settings=env.settings, storage=env.storage,
           executor=ThreadExecutor()).run_until_idle(timeout=60)
    j = _job(env, job_id)
    assert j.status == "failed" and j.error_code == "quota_exceeded" and "50" in j.error_message
    assert j.estimated_tokens is None and j.started_at is None
