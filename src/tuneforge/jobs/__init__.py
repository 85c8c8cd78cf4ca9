"""The job queue and its workers: fine-tuning jobs stored in the database, run by executors."""

from tuneforge.jobs.executors import Executor, ProcessExecutor, RunHandle, ThreadExecutor, make_executor
from tuneforge.jobs.queue import Claim, JobQueue
from tuneforge.jobs.worker import Worker

__all__ = ["Claim", "Executor", "JobQueue", "ProcessExecutor", "RunHandle", "ThreadExecutor", "Worker",
           "make_executor"]
