"""Tasks: classification, NER, extractive QA and generation (chat SFT of a causal LM). Each sub-package registers
itself on import.

A task is one folder: ``tasks/<task>/task.py`` (features, head, decoding, metrics) and ``data.py`` (its reader and
cleaner). Data files are read, cleaned, split and written for a task with :func:`load_dataset`,
:func:`clean_dataset`, :func:`split_dataset` and :func:`write_dataset`.
"""

from tuneforge.tasks import classification, generation, ner, qa  # noqa: F401  (registration)
from tuneforge.tasks.base import Encoded, Task, get_task, register_task, task_names, unregister_task
from tuneforge.tasks.datasets import (
    clean_dataset,
    guess_file_task,
    guess_task,
    load_dataset,
    read_options,
    split_dataset,
    write_dataset,
)

__all__ = [
    "Encoded",
    "Task",
    "clean_dataset",
    "get_task",
    "guess_file_task",
    "guess_task",
    "load_dataset",
    "read_options",
    "register_task",
    "split_dataset",
    "task_names",
    "unregister_task",
    "write_dataset",
]
