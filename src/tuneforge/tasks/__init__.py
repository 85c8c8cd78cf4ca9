"""Tasks: classification, NER and extractive QA. Each sub-package registers itself on import."""

from tuneforge.tasks import classification, ner, qa  # noqa: F401  (registration)
from tuneforge.tasks.base import Encoded, Task, get_task, register_task, task_names

__all__ = ["Encoded", "Task", "get_task", "register_task", "task_names"]
