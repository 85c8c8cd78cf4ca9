"""A real worker process for test_kill.py: it trains for real in a child process, but its first training attempt
holds after its first checkpoint until the test kills the worker (so the kill always lands mid-training).

Run as ``python -m tests.jobs.killable_worker DATABASE_URL DATA_DIR TINY_BERT``.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any


def held_training(spec: Any, emit: Any, should_stop: Any) -> dict[str, Any]:
    from tuneforge.jobs.runner import complete_checkpoints, run_training

    attempt_dir = Path(spec.work_root) / f"attempt-{spec.attempt}"

    def gate() -> bool:
        if complete_checkpoints(attempt_dir):
            while True:  # until the worker dies: should_stop() then ends this process
                should_stop()
                time.sleep(0.05)
        return bool(should_stop())

    return run_training(spec, emit, gate)


def main() -> None:
    from tests.service_support import make_settings
    from tuneforge.jobs.executors import ProcessExecutor
    from tuneforge.jobs.worker import Worker
    from tuneforge.store.db import make_engine, make_session_factory
    from tuneforge.store.storage import LocalStorage

    url, data_dir, tiny = sys.argv[1:4]
    settings = make_settings(Path(data_dir), url, base_models={"tiny-bert": Path(tiny)}, lease_seconds=2.0,
                             executor="process")
    sessions = make_session_factory(make_engine(url))
    worker = Worker(sessions=sessions, settings=settings, storage=LocalStorage(settings.artifacts_dir),
                    executor=ProcessExecutor(), name="doomed-worker",
                    train_runner="tests.jobs.killable_worker:held_training")
    worker.run(threading.Event())


if __name__ == "__main__":
    main()
