"""Runners for worker tests: they stand in for validation and training through the same executor interface."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

GATE = threading.Event()  # blocking_runner waits for it
STARTED: list[str] = []


def ok_validator(spec: Any, emit: Any, should_stop: Any) -> dict[str, Any]:
    emit({"message": "validated (fake)"})
    return {"status": "valid", "estimated_tokens": 100}


def _finished(spec: Any) -> dict[str, Any]:
    out = Path(spec.work_root) / f"attempt-{spec.attempt}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tuneforge.json").write_text("{}")
    return {"status": "succeeded", "output": str(out), "trained_tokens": 42, "summary": {}}


def blocking_runner(spec: Any, emit: Any, should_stop: Any) -> dict[str, Any]:
    STARTED.append(spec.job_id)
    emit({"type": "metrics", "message": "Step 1: loss=0.5", "data": {"step": 1, "loss": 0.5}})
    while not GATE.wait(0.02):
        if should_stop():
            return {"status": "stopped"}
    return _finished(spec)


def crash_runner(spec: Any, emit: Any, should_stop: Any) -> dict[str, Any]:
    emit({"message": "about to crash"})
    time.sleep(0.2)  # let the event reach the parent
    os._exit(3)


def stoppable_runner(spec: Any, emit: Any, should_stop: Any) -> dict[str, Any]:
    emit({"message": f"child pid {os.getpid()}", "data": {"pid": os.getpid()}})
    while not should_stop():
        time.sleep(0.02)
    return {"status": "stopped"}


def gated_training(spec: Any, emit: Any, should_stop: Any) -> dict[str, Any]:
    """The real training, except that the job's first training attempt waits after its second step until it is
    asked to stop: a cancel or pause then always arrives mid-training."""
    from tuneforge.jobs.runner import run_training

    steps = {"n": 0}

    def gate() -> bool:
        steps["n"] += 1
        if spec.training_attempt == 1 and steps["n"] >= 2:
            while not should_stop():
                time.sleep(0.02)
            return True
        return bool(should_stop())

    return run_training(spec, emit, gate)
