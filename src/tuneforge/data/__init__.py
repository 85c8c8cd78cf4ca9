"""The data layer: read files, validate them for a task, clean, split and fingerprint them.

Typical use::

    ds = load_dataset("train.csv", "classification", min_classes=2)
    ds, report = clean_dataset(ds)
    parts = split_dataset(ds, dev=0.1, test=0.1, seed=0)
"""

from tuneforge.data.cleaning import REASONS, CleanOptions, CleanReport, clean_dataset, clean_text, near_duplicates
from tuneforge.data.dataset import TASKS, ColumnMap, Dataset, load_dataset, sort_labels
from tuneforge.data.formats import FORMATS, Row, detect_format, fingerprint, fingerprint_examples, read_rows
from tuneforge.data.splitting import split_dataset, write_dataset

__all__ = [
    "FORMATS",
    "REASONS",
    "TASKS",
    "CleanOptions",
    "CleanReport",
    "ColumnMap",
    "Dataset",
    "Row",
    "clean_dataset",
    "clean_text",
    "detect_format",
    "fingerprint",
    "fingerprint_examples",
    "load_dataset",
    "near_duplicates",
    "read_rows",
    "sort_labels",
    "split_dataset",
    "write_dataset",
]
