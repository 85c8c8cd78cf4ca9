"""The data layer, generic only: file formats and readers, the Dataset and row/problem helpers every task's reader
uses, cleaning primitives, splitting by keys, augmentation.

Reading a file for a task (and cleaning, splitting, writing it) goes through the task: see
:mod:`tuneforge.tasks` (``load_dataset``, ``clean_dataset``, ``split_dataset``, ``write_dataset``).
"""

from tuneforge.data.cleaning import REASONS, Cleaner, CleanOptions, CleanReport, clean_text, near_duplicates
from tuneforge.data.dataset import ColumnMap, Dataset, ReadOptions, sort_labels
from tuneforge.data.formats import FORMATS, Row, detect_format, fingerprint, fingerprint_examples, read_rows
from tuneforge.data.splitting import SplitKeys, split_by_keys

__all__ = [
    "FORMATS",
    "REASONS",
    "CleanOptions",
    "CleanReport",
    "Cleaner",
    "ColumnMap",
    "Dataset",
    "ReadOptions",
    "Row",
    "SplitKeys",
    "clean_text",
    "detect_format",
    "fingerprint",
    "fingerprint_examples",
    "near_duplicates",
    "read_rows",
    "sort_labels",
    "split_by_keys",
]
