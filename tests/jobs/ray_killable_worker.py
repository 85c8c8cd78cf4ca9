"""A real worker process on the Ray executor for test_ray_executor.py: a local Ray in this process, each job's
runner in a Ray actor; the first training attempt holds after its first checkpoint until the test kills this
process (:func:`tests.jobs.killable_worker.held_training`).

Run as ``python -m tests.jobs.ray_killable_worker DATABASE_URL DATA_DIR TINY_BERT``.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path


def main() -> None:
    import ray

    from tests.service_support import make_settings
    from tuneforge.jobs.executors import make_executor
    from tuneforge.jobs.worker import Worker
    from tuneforge.store.db import make_engine, make_session_factory
    from tuneforge.store.storage import LocalStorage
    from tuneforge.training.distributed.cluster import private_token, worker_env

    url, data_dir, tiny = sys.argv[1:4]
    root = str(Path(__file__).resolve().parents[2])
    private_token()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {**worker_env(), "PYTHONPATH": os.pathsep.join([root, os.environ.get(
                 "PYTHONPATH", "")])}})
    settings = make_settings(Path(data_dir), url, base_models={"tiny-bert": Path(tiny)}, lease_seconds=2.0,
                             executor="ray")
    sessions = make_session_factory(make_engine(url))
    worker = Worker(sessions=sessions, settings=settings, storage=LocalStorage(settings.artifacts_dir),
                    executor=make_executor("ray"), name="doomed-ray-worker",
                    train_runner="tests.jobs.killable_worker:held_training")
    worker.run(threading.Event())


if __name__ == "__main__":
    main()
