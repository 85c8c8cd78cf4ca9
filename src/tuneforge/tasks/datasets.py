"""Data files read, cleaned, split and written for a task: the task-aware front of the generic data layer.

Typical use::

    ds = load_dataset("train.csv", "classification", min_classes=2)
    ds, report = clean_dataset(ds)
    parts = split_dataset(ds, dev=0.1, test=0.1, seed=0)
    write_dataset(parts["train"], "train.jsonl")

Each function hands the task-specific part to the dataset's task (its ``read``, ``clean``, ``split_keys`` and
``record``), so a new task plugs in by registering itself; nothing here names a task.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from tuneforge.data.cleaning import CleanOptions, CleanReport
from tuneforge.data.dataset import ColumnMap, Dataset, ReadOptions, column_flag, generic_option_errors
from tuneforge.data.formats import read_rows
from tuneforge.data.splitting import split_by_keys
from tuneforge.errors import ConfigError, DataError
from tuneforge.tasks.base import Task, get_task, task_names
from tuneforge.utils.fs import write_jsonl

__all__ = ["clean_dataset", "file_columns", "guess_file_task", "guess_task", "load_dataset", "read_options",
           "split_dataset", "write_dataset"]


def load_dataset(
    path: str | os.PathLike[str],
    task: str,
    *,
    columns: ColumnMap | None = None,
    format: str | None = None,
    require_labels: bool = True,
    label_set: Sequence[str] | None = None,
    multi_label: bool | None = None,
    label_separator: str | None = None,
    min_classes: int = 1,
    strict_bio: bool = True,
    repair_offsets: bool = False,
    allow_empty: bool = False,
    delimiter: str | None = None,
    encoding: str | None = None,
) -> Dataset:
    """Read ``path`` and validate it for ``task`` (a registered task's name) with the task's reader.

    Args:
        columns: column names to use instead of the auto-detected ones.
        format: the file format (see :data:`tuneforge.data.formats.FORMATS`); None means from the extension.
        require_labels: when False, labels/tags/answers may be absent (prediction input).
        label_set: the allowed labels (classification) or entity types (ner; ``B-``/``I-`` prefixes allowed);
            when given it also becomes the dataset's label space.
        multi_label: classification only. None = auto (True when a label is a JSON list or
            ``label_separator`` is given).
        label_separator: splits a string label into several when multi-label (default ``"|"``).
        min_classes: the fewest distinct labels accepted when labels are required (the trainer passes 2).
        strict_bio: when False, an ``I-X`` tag that does not follow ``B-X``/``I-X`` is a warning, not an error,
            and is rewritten to ``B-X`` (conlleval's reading of it)
            (some public corpora, such as Weibo NER, contain a few).
        repair_offsets: qa only. Move an answer whose ``answer_start`` is a little off (UTF-16 units, bytes, a few
            characters) to where its text is, and drop one that cannot be located, with a warning each in
            ``Dataset.warnings``; when False (the default) such answers are errors.
        allow_empty: keep blank texts instead of reporting them (``data clean`` removes them with a reason).
        delimiter: the CSV/TSV field separator (one character, or ``tab``/``comma``/``semicolon``/``pipe``);
            None sniffs it.
        encoding: the file's text encoding (e.g. ``big5``, ``shift_jis``, ``cp1252``); None reads UTF-8/16/32,
            or a legacy encoding detected with confidence, with a warning naming it in ``Dataset.warnings``.

    Raises:
        ConfigError: an unknown task or an option that does not apply to it.
        DataError: every problem found in the file.
    """
    options = dict(columns=columns, format=format, require_labels=require_labels, label_set=label_set,
                   multi_label=multi_label, label_separator=label_separator, min_classes=min_classes,
                   strict_bio=strict_bio, repair_offsets=repair_offsets, allow_empty=allow_empty, delimiter=delimiter,
                   encoding=encoding)
    if task not in task_names():
        errors = [f"task: unknown task {task!r} (choose from {', '.join(task_names())})"]
        raise ConfigError(errors + generic_option_errors(_options(options)))
    return get_task(task).read(path, **options)


def _options(options: Mapping[str, Any]) -> ReadOptions:
    values = dict(options)
    if values.get("columns") is None:
        values["columns"] = ColumnMap()
    try:
        return ReadOptions(**values)
    except TypeError as e:
        raise ConfigError(f"options: {e}") from None


def read_options(task: Task, options: Mapping[str, Any]) -> ReadOptions:
    """The reader options of :func:`load_dataset` checked against what ``task`` accepts (its ``columns``,
    ``multi_label_capable`` and ``labelled`` attributes): a task's ``read`` starts with this.

    Raises:
        ConfigError: every option that does not apply to the task or has a bad value.
    """
    opts = _options(options)
    errors: list[str] = []
    for f in fields(opts.columns):
        if getattr(opts.columns, f.name) is not None and f.name not in task.columns:
            errors.append(f"{column_flag(f.name)}: does not apply to the {task.name} task")
    if not task.multi_label_capable and (opts.multi_label or opts.label_separator is not None):
        capable = ", ".join(n for n in task_names() if get_task(n).multi_label_capable) or "multi-label tasks"
        errors.append(f"multi_label/label_separator: only apply to {capable}, not {task.name}")
    if not task.labelled and opts.label_set is not None:
        errors.append(f"label_set: does not apply to the {task.name} task")
    errors += generic_option_errors(opts)
    if errors:
        raise ConfigError(errors)
    return opts


def clean_dataset(ds: Dataset, options: CleanOptions | None = None) -> tuple[Dataset, CleanReport]:
    """Return a cleaned copy of ``ds`` (the input is not modified) and a report of what changed, by the cleaner
    of the dataset's task."""
    return get_task(ds.task).clean(ds, options or CleanOptions())


def split_dataset(ds: Dataset, *, dev: float = 0.1, test: float = 0.1, seed: int = 0) -> dict[str, Dataset]:
    """Split ``ds`` into ``{"train", "dev", "test"}``; a split whose fraction is 0 is left out.

    How is up to the task (its ``split_keys``): classification is stratified by label, qa grouped by article so
    no passage is in two splits, ner random. Fractions are of the number of examples (of groups when grouped, so
    sizes are approximate). Splits are deterministic for a seed and keep the examples in file order.

    Raises:
        ConfigError: a fraction outside [0, 1), ``dev + test >= 1``, or too few examples (or groups) to give
            every requested split at least one.
    """
    return split_by_keys(ds, get_task(ds.task).split_keys(ds.examples), dev=dev, test=test, seed=seed)


def write_dataset(ds: Dataset, path: str | os.PathLike[str]) -> None:
    """Write the normalized examples as JSON Lines, atomically, as the task's ``record`` lays each out;
    :func:`load_dataset` reads the file back as is."""
    task = get_task(ds.task)
    write_jsonl(path, (task.record(ex) for ex in ds.examples))


def guess_task(columns: Sequence[str]) -> str:
    """The task a file's columns suggest: the first task, in ``detect_order``, whose ``recognises`` accepts them
    (tokens/tags → ner, question + context → qa, else classification)."""
    tasks = sorted((get_task(n) for n in task_names()), key=lambda t: (t.detect_order, t.name))
    for task in tasks:
        if task.recognises(columns):
            return task.name
    raise ConfigError(f"task: cannot tell the task from the columns {', '.join(columns) or '(none)'}",
                      hint="name the task (choose from " + ", ".join(task_names()) + ")")


def file_columns(path: str | os.PathLike[str], *, format: str | None = None, delimiter: str | None = None,
                 encoding: str | None = None) -> list[str]:
    """The columns (keys) a data file's records have, in order of first appearance; for a JSON Lines file that
    does not read cleanly, the keys of the lines that are JSON objects (so that a broken file is still read by the
    task its layout names, which reports every problem); empty when nothing can be told."""
    try:
        rows = read_rows(path, format=format, delimiter=delimiter, encoding=encoding)[1]
        records = [r.data for r in rows]
    except DataError:
        records = []
        try:
            with open(path, "rb") as f:
                head = [f.readline() for _ in range(1000)]
        except OSError:
            return []
        for raw in head:
            try:
                value = json.loads(raw.decode("utf-8", errors="replace"))
            except (ValueError, RecursionError):  # a line nested too deep tells no columns either
                continue
            if isinstance(value, dict):
                records.append(value)
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            seen.setdefault(str(key), None)
    return list(seen)


def guess_file_task(path: str | os.PathLike[str], **read: Any) -> str:
    """The task a data file's columns suggest (:func:`guess_task` of :func:`file_columns`; ``read``: its
    ``format``, ``delimiter``, ``encoding``): a chat, prompt/completion or preference-pair file is generation,
    tokens/tags ner, question + context qa, anything else classification."""
    return guess_task(file_columns(path, **read))
