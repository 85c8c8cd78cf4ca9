"""Extractive question answering: long contexts in overlapping windows, the best span over all windows."""

from tuneforge.tasks.base import register_task
from tuneforge.tasks.qa.metrics import normalize_answer, squad_em_f1
from tuneforge.tasks.qa.task import QaTask

TASK = register_task(QaTask())

__all__ = ["TASK", "QaTask", "normalize_answer", "squad_em_f1"]
