"""Named-entity recognition with BIO tags aligned to sub-words and decoded to character spans."""

from tuneforge.tasks.base import register_task
from tuneforge.tasks.ner.task import NerTask, bio_to_spans, label_positions

TASK = register_task(NerTask())

__all__ = ["TASK", "NerTask", "bio_to_spans", "label_positions"]
