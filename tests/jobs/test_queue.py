"""The queue's guarantees, on SQLite and PostgreSQL: atomic claims, leases, the reaper, attempt fencing."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select, update

from tests.service_support import new_tenant
from tuneforge.jobs.queue import Claim
from tuneforge.jobs.service import cancel_job, pause_job, resume_job
from tuneforge.store.db import utcnow
from tuneforge.store.models import Job, JobEvent, Model, Tenant


def _insert_jobs(env, n: int, status: str = "queued") -> list[str]:
    name, _ = new_tenant(env.sessions, max_concurrent_jobs=1000)
    with env.sessions() as s:
        tid = s.scalar(select(Tenant.id).where(Tenant.name == name))
        ids = [f"ftjob-{i:04d}" for i in range(n)]
        for i in ids:
            s.add(Job(id=i, tenant_id=tid, base_model="bert-tiny", task="classification", training_file_id="f",
                      seed=1, status=status, created_at=utcnow(), run_after=utcnow(), max_attempts=3,
                      validated_at=utcnow()))
        s.commit()
    return ids


def _job(env, job_id: str) -> Job:
    with env.sessions() as s:
        return s.get(Job, job_id)


def _expire(env, job_id: str) -> None:
    with env.sessions() as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()


def test_concurrent_workers_never_claim_the_same_job(env):
    ids = _insert_jobs(env, 24)
    claimed: list[Claim] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            while (c := env.queue.claim(f"w{n}")) is not None:
                with lock:
                    claimed.append(c)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(c.job_id for c in claimed) == ids  # each job exactly once
    assert all(c.attempt == 1 and c.phase == "train" for c in claimed)
    with env.sessions() as s:
        owners = dict(s.execute(select(Job.id, Job.lease_owner)).all())
        assert {owners[c.job_id] for c in claimed} == {c.owner for c in claimed}
        assert all(j.status == "running" for j in s.scalars(select(Job)))
    assert env.queue.claim("late") is None


def test_validation_claims_come_before_training_and_keep_their_status(env):
    _insert_jobs(env, 1, status="validating_files")
    c = env.queue.claim("w")
    assert c.phase == "validate" and _job(env, c.job_id).status == "validating_files"
    assert env.queue.finish_validation(c, estimated_tokens=10)
    j = _job(env, c.job_id)
    assert j.status == "queued" and j.lease_owner is None and j.estimated_tokens == 10
    c2 = env.queue.claim("w")
    assert c2.phase == "train" and c2.attempt == 2 and _job(env, c.job_id).status == "running"


def test_heartbeat_renews_the_lease_and_carries_cancel(env):
    tenant = new_tenant(env.sessions)
    [job_id] = _insert_jobs(env, 1)
    c = env.queue.claim("w")
    before = _job(env, job_id).lease_expires_at
    ours, control = env.queue.heartbeat(c)
    assert ours and control is None and _job(env, job_id).lease_expires_at >= before
    with env.sessions() as s:
        tid = _job(env, job_id).tenant_id
        cancel_job(s, tenant_id=tid, job_id=job_id)
    assert _job(env, job_id).status == "running"  # a running training is asked, not killed
    assert env.queue.heartbeat(c) == (True, "cancel")
    assert env.queue.stop(c, "cancel")
    j = _job(env, job_id)
    assert j.status == "cancelled" and j.finished_at is not None and j.lease_owner is None
    assert tenant  # another tenant exists and is untouched


def test_expired_lease_is_requeued_then_failed_after_max_attempts(env):
    [job_id] = _insert_jobs(env, 1)
    for attempt in (1, 2):
        c = env.queue.claim("dying-worker")
        assert c.attempt == attempt
        _expire(env, job_id)
        assert env.queue.reap() == [job_id]
        j = _job(env, job_id)
        assert j.status == "queued" and j.failures == attempt and j.lease_owner is None
    c = env.queue.claim("dying-worker")
    _expire(env, job_id)
    env.queue.reap()
    j = _job(env, job_id)
    assert j.status == "failed" and j.error_code == "max_attempts_exceeded"
    assert "stopped renewing its lease" in j.error_message and "3 failed attempts" in j.error_message
    assert env.queue.claim("w") is None
    with env.sessions() as s:
        msgs = [e.message for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id))]
    assert sum("queued again" in m for m in msgs) == 2


def test_a_presumed_dead_worker_cannot_overwrite_a_newer_attempt(env):
    [job_id] = _insert_jobs(env, 1)
    old = env.queue.claim("slow-worker")
    _expire(env, job_id)
    env.queue.reap()
    new = env.queue.claim("new-worker")
    assert new.attempt == old.attempt + 1
    published = []
    # the old attempt wakes up and tries to finish, heartbeat, log and fail: all refused
    assert not env.queue.complete(old, model_id="ft:old", storage_key="k", publish=lambda: published.append(1) or 0,
                                  trained_tokens=5, summary={})
    assert published == []  # nothing was published by the stale attempt
    assert env.queue.heartbeat(old) == (False, None)
    assert not env.queue.record(old, [{"message": "stale"}])
    assert not env.queue.fail(old, {"code": "x", "message": "stale", "param": None}, retryable=False)
    assert _job(env, job_id).status == "running"
    assert env.queue.complete(new, model_id="ft:new", storage_key="k", publish=lambda: 7, trained_tokens=5,
                              summary={})
    j = _job(env, job_id)
    assert j.status == "succeeded" and j.fine_tuned_model == "ft:new" and j.trained_tokens == 5
    with env.sessions() as s:
        assert [m.id for m in s.scalars(select(Model))] == ["ft:new"]
        assert not any(e.message == "stale" for e in s.scalars(select(JobEvent)))


def test_reaper_finishes_a_cancel_or_pause_whose_worker_died(env):
    a, b = _insert_jobs(env, 2)
    tid = _job(env, a).tenant_id
    env.queue.claim("w")
    env.queue.claim("w")
    with env.sessions() as s:
        cancel_job(s, tenant_id=tid, job_id=a)
        pause_job(s, tenant_id=tid, job_id=b)
    _expire(env, a)
    _expire(env, b)
    env.queue.reap()
    assert _job(env, a).status == "cancelled" and _job(env, b).status == "paused"
    assert _job(env, b).failures == 0  # a pause is not a failure


def test_pause_and_resume_without_a_worker(env, tenant):
    job_id = env.job(tenant)
    p = env.principal(tenant)
    with env.sessions() as s:
        assert pause_job(s, tenant_id=p.tenant_id, job_id=job_id).status == "paused"
    assert env.queue.claim("w") is None  # paused jobs are not claimed
    with env.sessions() as s:
        assert resume_job(s, principal=p, job_id=job_id).status == "validating_files"  # never validated yet
    assert env.queue.claim("w").job_id == job_id
