"""The Ray executor on a local Ray started by this module: a runner named "module:function" runs in a Ray actor and
its events and result come back; a stop request reaches its ``should_stop()``; a kill ends the actor (a crash
result); a runner that raises is a crash; and the worker trains a queued job through it to completion."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray.train", reason="the ray extra (ray[train,tune]) is not installed")

from tuneforge.jobs.executors import make_executor  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = "tests.jobs.test_ray_executor"


@pytest.fixture(scope="module")
def executor():
    import ray

    from tuneforge.training.distributed.cluster import private_token, worker_env

    os.environ.pop("RAY_ADDRESS", None)
    private_token()  # no ~/.ray/auth_token left behind (it would change a later `ray start` on this machine)
    env = {**worker_env(), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    yield make_executor("ray")
    ray.shutdown()
    # a later ray.init (Flower's simulation) must not find this cluster's address; the token stays: Ray keeps the
    # first one it read for the whole process
    os.environ.pop("RAY_ADDRESS", None)


def counting_runner(spec: Any, emit: Any, should_stop: Any) -> dict[str, Any]:
    for i in range(3):
        emit({"message": f"step {i}", "data": {"step": i, "pid": os.getpid()}})
    return {"status": "succeeded", "output": spec["output"], "trained_tokens": 7}


def waiting_runner(spec: Any, emit: Any, should_stop: Any) -> dict[str, Any]:
    emit({"message": "waiting"})
    deadline = time.time() + 60
    while time.time() < deadline:
        if should_stop() and not spec.get("ignore_stop"):
            return {"status": "stopped"}
        time.sleep(0.02)
    return {"status": "succeeded"}


def raising_runner(spec: Any, emit: Any, should_stop: Any) -> dict[str, Any]:
    raise RuntimeError("bad things")


def _wait(handle: Any, timeout: float = 60) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    deadline = time.time() + timeout
    while not handle.done():
        assert time.time() < deadline, "the run did not finish"
        events += handle.events()
        time.sleep(0.05)
    return events + handle.events()


def test_a_runner_runs_in_a_ray_actor_and_its_events_and_result_come_back(executor):
    handle = executor.start(f"{HERE}:counting_runner", {"output": "/x"})
    events = _wait(handle)
    assert [e["message"] for e in events] == ["step 0", "step 1", "step 2"]
    assert events[0]["data"]["pid"] != os.getpid()  # another process: the actor's
    assert handle.result() == {"status": "succeeded", "output": "/x", "trained_tokens": 7}
    assert handle.pid == events[0]["data"]["pid"]


def test_stop_reaches_the_runner_and_kill_ends_the_actor(executor):
    stopping = executor.start(f"{HERE}:waiting_runner", {})
    deadline = time.time() + 60
    seen: list[dict[str, Any]] = []
    while not seen:  # running: it has emitted
        assert time.time() < deadline
        seen += stopping.events()
        time.sleep(0.05)
    stopping.request_stop()
    _wait(stopping)
    assert stopping.result() == {"status": "stopped"}

    stubborn = executor.start(f"{HERE}:waiting_runner", {"ignore_stop": True})
    while not stubborn.events():
        assert time.time() < deadline + 60
        time.sleep(0.05)
    stubborn.kill()
    assert stubborn.done() and stubborn.result()["status"] == "crashed"

    failing = executor.start(f"{HERE}:raising_runner", {})
    _wait(failing)
    assert failing.result() == {"status": "crashed", "message": "RuntimeError: bad things"}


def finishing_runner(spec: Any, emit: Any, should_stop: Any) -> dict[str, Any]:
    from tests.jobs.fakes import _finished

    emit({"type": "metrics", "message": "Step 1: loss=0.5", "data": {"step": 1, "loss": 0.5}})
    return _finished(spec)


def test_the_worker_completes_a_queued_job_through_the_ray_executor(executor, sqlite_env):
    from tests.service_support import new_tenant
    from tuneforge.jobs.worker import Worker
    from tuneforge.store.models import Job

    env = sqlite_env
    _, key = new_tenant(env.sessions)
    job_id = env.job(key)
    worker = Worker(sessions=env.sessions, settings=env.settings, storage=env.storage, executor=executor,
                    train_runner=f"{HERE}:finishing_runner", validate_runner="tests.jobs.fakes:ok_validator")
    worker.run_until_idle(timeout=120)
    with env.sessions() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.training_attempt) == ("succeeded", 1), job.error_message


def _run_actors() -> list[int]:
    """The processes of the Ray executor's actors on this machine."""
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"]) if "_RunActor" in " ".join(p.info["cmdline"] or [])]


@pytest.mark.slow
def test_killing_the_worker_ends_its_ray_actor_and_the_job_is_rerun(sqlite_env, tiny_bert, tmp_path):
    """kill -9 of the driver (the worker holding the lease): Ray ends the actor it owned, the job stays leased
    until the lease expires, and another worker re-runs it from the last checkpoint."""
    import signal
    import subprocess
    import sys

    from sqlalchemy import select

    from tests.jobs.test_kill import _gone, _wait
    from tests.service_support import jsonl, new_tenant, rows
    from tuneforge.jobs.executors import ThreadExecutor
    from tuneforge.jobs.worker import Worker
    from tuneforge.store.models import Checkpoint, Job, JobEvent

    env = sqlite_env
    _, key = new_tenant(env.sessions)
    job_id = env.job(key, data=jsonl(rows()), epochs=3,
                     options={"batch_size": 4, "logging_steps": 1, "precision": "fp32"})
    log = open(tmp_path / "doomed.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "tests.jobs.ray_killable_worker", env.settings.db_url,
                             str(env.settings.data_dir), str(tiny_bert)], cwd=ROOT, stdout=log, stderr=log,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        def checkpointed() -> bool:
            assert proc.poll() is None, (tmp_path / "doomed.log").read_text()[-3000:]
            with env.sessions() as s:
                return s.scalar(select(Checkpoint.id).where(Checkpoint.job_id == job_id)) is not None

        _wait(checkpointed, 300, "the first checkpoint")
        with env.sessions() as s:
            assert s.get(Job, job_id).status == "running"
        actors = _run_actors()
        assert actors, "the training runs in a Ray actor"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    _wait(lambda: all(_gone(pid) for pid in actors), 60, "the Ray actor to end with the worker that owned it")

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
        events = [e.message for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id))]
    assert job.status == "succeeded", job.error_message
    assert job.failures == 1 and any("doomed-ray-worker stopped renewing its lease" in m for m in events)
    assert any("Resuming from the checkpoint" in m for m in events)
