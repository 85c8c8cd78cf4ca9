"""What a job's record shows besides its status: when it will finish (from the throughput it measures), and its
results file (the metrics it logged, as CSV, after OpenAI's ``result_files``)."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneforge.jobs.runner import is_reported_metric
from tuneforge.store.db import utcnow
from tuneforge.store.models import File, Job, JobEvent
from tuneforge.store.storage import Storage

__all__ = ["RESULTS_FILENAME", "RESULTS_PURPOSE", "estimated_finish", "result_file", "results_csv",
           "results_file_id"]

RESULTS_PURPOSE = "fine-tune-results"
RESULTS_FILENAME = "step_metrics.csv"


def _metrics_events(session: Session, job: Job, *, last: bool) -> JobEvent | None:
    order = JobEvent.seq.desc() if last else JobEvent.seq
    return session.scalar(select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.type == "metrics",
                                                 JobEvent.attempt == job.attempt).order_by(order).limit(1))


def estimated_finish(session: Session, job: Job) -> datetime | None:
    """When a running job will finish: the steps left at the rate its current attempt has trained so far
    (between its first and latest logged steps). None until two steps apart were logged."""
    if job.status != "running":
        return None
    first, last = _metrics_events(session, job, last=False), _metrics_events(session, job, last=True)
    if first is None or last is None or first.id == last.id:
        return None
    a, b = first.data or {}, last.data or {}
    total, step0, step1 = b.get("total_steps"), a.get("step"), b.get("step")
    if not (isinstance(total, int | float) and isinstance(step0, int | float) and isinstance(step1, int | float)) \
            or step1 <= step0:
        return None
    seconds = (last.created_at - first.created_at).total_seconds()
    if seconds <= 0:
        return None
    left = max(0.0, float(total) - float(step1)) * seconds / (step1 - step0)
    return max(utcnow(), last.created_at + timedelta(seconds=left))


def results_csv(session: Session, job: Job) -> bytes:
    """The metrics the job's successful attempt logged, one row per step: ``step``, ``epoch``, ``train_loss``,
    ``learning_rate``, then the other metrics of the model by name (the dev metrics ``eval_*`` of the encoder
    tasks; ``train_mean_token_accuracy``, ``valid_loss``, ``valid_mean_token_accuracy`` ... of generation)."""
    rows: dict[int, dict[str, Any]] = {}
    for data in session.scalars(select(JobEvent.data).where(JobEvent.job_id == job.id, JobEvent.type == "metrics",
                                                            JobEvent.attempt == job.attempt).order_by(JobEvent.seq)):
        if not data or not isinstance(data.get("step"), int):
            continue
        row = rows.setdefault(data["step"], {"step": data["step"]})
        if "epoch" in data:
            row["epoch"] = data["epoch"]
        if "train_loss" in data or "loss" in data:
            row["train_loss"] = data.get("train_loss", data.get("loss"))
        if "learning_rate" in data:
            row["learning_rate"] = data["learning_rate"]
        row.update({k: v for k, v in data.items() if k != "train_loss" and is_reported_metric(k)
                    and isinstance(v, int | float)})
    first = ["step", "epoch", "train_loss", "learning_rate"]
    others = sorted({k for r in rows.values() for k in r} - set(first))
    out = io.StringIO()
    writer = csv.DictWriter(out, [*first, *others], lineterminator="\n")
    writer.writeheader()
    for step in sorted(rows):
        writer.writerow(rows[step])
    return out.getvalue().encode()


def results_file_id(job: Job) -> str:
    return f"file-{job.id.split('-', 1)[-1][:24]}-metrics"


def result_file(session: Session, storage: Storage, job: Job) -> File | None:
    """The results file of a succeeded job, written the first time it is asked for; None for other jobs."""
    if job.status != "succeeded":
        return None
    fid = results_file_id(job)
    f = session.get(File, fid)
    if f is not None:
        return f if f.tenant_id == job.tenant_id else None
    content = results_csv(session, job)
    key = f"files/{job.tenant_id}/{fid}.csv"
    obj = storage.put_stream(key, io.BytesIO(content))
    f = File(id=fid, tenant_id=job.tenant_id, filename=RESULTS_FILENAME, purpose=RESULTS_PURPOSE,
             bytes=obj.size, sha256=getattr(obj, "sha256", hashlib.sha256(content).hexdigest()),
             storage_key=key, status="processed", created_at=job.finished_at or utcnow())
    try:
        with session.begin_nested():
            session.add(f)
        session.commit()
    except IntegrityError:  # another request wrote it first: the same content
        session.rollback()
        return session.get(File, fid)
    return f
