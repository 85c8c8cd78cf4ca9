"""Text classification: single-label, multi-label and sentence pairs."""

from tuneforge.tasks.base import register_task
from tuneforge.tasks.classification.task import ClassificationTask

TASK = register_task(ClassificationTask())

__all__ = ["TASK", "ClassificationTask"]
