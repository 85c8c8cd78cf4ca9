"""The task interface and its registry.

A task turns normalized examples into model features, builds the model head, decodes raw model outputs back
into predictions (labels, entity spans, answer spans) and scores predictions against references. Training,
evaluation and inference all go through these same functions, so what is measured is what is served.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tuneforge.errors import ConfigError, DataProblem

if TYPE_CHECKING:
    from tuneforge.data.cleaning import CleanOptions, CleanReport
    from tuneforge.data.dataset import Dataset
    from tuneforge.data.splitting import SplitKeys

__all__ = ["Encoded", "Task", "get_task", "register_task", "task_names", "unregister_task"]


@dataclass
class Encoded:
    """Model features for a list of examples.

    ``features`` are dicts of model inputs (and labels when known); ``example_index[i]`` is the example that
    feature ``i`` came from (QA splits one long context into several features); ``meta`` holds what decoding
    needs (offsets, word ids) and never reaches the model.
    """

    features: list[dict[str, Any]]
    example_index: list[int]
    meta: list[dict[str, Any]] = field(default_factory=list)
    n_examples: int = 0
    truncated: int = 0  # examples whose input did not fit in max_length

    def lengths(self) -> list[int]:
        return [len(f["input_ids"]) for f in self.features]


class Task(Protocol):
    name: str
    #: the dev metric used for early stopping and for picking the best checkpoint (higher is better)
    main_metric: str
    default_max_length: int
    #: whether model outputs have a per-token axis (NER, QA) or one row per sequence (classification)
    per_token: bool
    #: fields of a normalized example
    columns: tuple[str, ...]
    #: whether the head predicts from a label list (classification classes, NER entity types); QA predicts spans
    labelled: bool
    #: what one label is called in reports ("class", "entity type")
    label_noun: str
    #: whether examples may carry several labels
    multi_label_capable: bool
    #: how an input longer than max_length is handled, for the user ("truncated.")
    long_input_note: str
    #: whether the whole sequence gets one prediction
    sequence_level: bool
    #: whether a long input is split into overlapping windows (``stride`` tokens apart) instead of truncated
    windowed: bool
    #: the transformers head of the task's models: "sequence-classification", "token-classification" or
    #: "question-answering" (methods load and wrap models by it)
    auto_model_kind: str
    #: whether the task's models generate text (a generative task) rather than return logits
    generative: bool
    #: whether data scored against a model must use only the labels it was trained on (classification: an unknown
    #: class in dev or evaluation data is an error; NER: an entity type unseen in training is simply missed)
    closed_label_set: bool
    #: the order in which tasks are asked whether they ``recognise`` a file's columns (lower first); the fallback
    #: task (classification, which recognises anything) comes last
    detect_order: int

    def read(self, path: str | os.PathLike[str], **options: Any) -> Dataset:
        """Read and validate a data file into normalized examples (the reader behind
        :func:`tuneforge.tasks.load_dataset`, which documents the options; check them with
        :func:`tuneforge.tasks.datasets.read_options`). Raises ConfigError for a bad option, DataError listing
        every problem in the file."""

    def clean(self, ds: Dataset, options: CleanOptions) -> tuple[Dataset, CleanReport]:
        """A cleaned copy of ``ds`` and what was removed or changed (see :mod:`tuneforge.data.cleaning`)."""

    def record(self, example: dict[str, Any]) -> dict[str, Any]:
        """One normalized example as the JSON Lines record ``read`` reads back (what ``write_dataset`` writes)."""

    def split_keys(self, examples: Sequence[dict[str, Any]]) -> SplitKeys:
        """How examples are split into train/dev/test: stratification keys, groups, or neither (random)."""

    def recognises(self, columns: Sequence[str]) -> bool:
        """Whether a file with these columns looks like this task's data (used to guess an upload's task)."""

    def label_occurrences(self, example: dict[str, Any]) -> list[str]:
        """The labels one example counts toward in a file's label summary (its classes, the types of its
        entities; none for qa)."""

    def parse_input(self, item: Any, index: int) -> dict[str, Any] | DataProblem:
        """The ``index``-th raw input (string or dict, from the CLI or the API) as an example, or the problem."""

    def count_tokens(self, examples: Sequence[dict[str, Any]], tokenizer: Any, max_length: int | None = None) -> int:
        """Tokens of the model inputs the examples make: what the usage ledger meters."""

    def auto_hyperparameters(self, *, n_train: int, encoder_size: int) -> dict[str, Any]:
        """Learning rate and batch size when left as auto."""

    def predict(self, model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], labels: list[str], *,
                max_length: int, stride: int = 128, multi_label: bool = False, batch_size: int = 64,
                bf16: bool = False, on_batch: Any = None) -> list[dict[str, Any]]:
        """How the task runs a model: predictions for examples (encoder tasks: encode -> forward -> decode)."""

    def public_prediction(self, prediction: dict[str, Any]) -> dict[str, Any]:
        """A prediction as users see it (CLI, API): without what only decoding and scoring need."""

    def label_list(self, examples: Sequence[dict[str, Any]], multi_label: bool) -> list[str]:
        """The output labels of the head, in id order, from the training examples."""

    def build_model(self, base_path: Path, labels: list[str], *, multi_label: bool, **kwargs: Any) -> Any:
        """Load the base model with a new head for this task (weights from safetensors only)."""

    def encode(self, examples: Sequence[dict[str, Any]], tokenizer: Any, labels: list[str], *,
               max_length: int, stride: int = 128, with_labels: bool = True, multi_label: bool = False) -> Encoded:
        """Tokenize examples into features; labels are attached when ``with_labels``."""

    def collator(self, tokenizer: Any) -> Any:
        """A data collator that pads a batch to its longest item."""

    def decode(self, outputs: list[tuple[np.ndarray, ...]], enc: Encoded, examples: Sequence[dict[str, Any]],
               labels: list[str], *, multi_label: bool = False) -> list[dict[str, Any]]:
        """Turn per-feature model outputs (unpadded) into one prediction per example."""

    def score(self, predictions: list[dict[str, Any]], examples: Sequence[dict[str, Any]], labels: list[str], *,
              multi_label: bool = False) -> dict[str, Any]:
        """Metrics of predictions against the references: flat numbers, plus optional ``per_class`` (label ->
        precision/recall/f1/support) and ``confusion_matrix`` (rows: reference, columns: prediction)."""

    def describe(self, prediction: dict[str, Any], example: dict[str, Any]) -> tuple[bool, str]:
        """(is the prediction wrong?, one markdown line showing input, reference and prediction) for error analysis."""


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry under its name (replacing a task of that name); returns it."""
    _TASKS[task.name] = task
    return task


def unregister_task(name: str) -> None:
    """Remove the task called ``name`` from the registry (a no-op when absent): for tasks registered by tests or
    plugins for a while."""
    _TASKS.pop(name, None)


def get_task(name: str) -> Task:
    import tuneforge.tasks  # noqa: F401  (importing the package registers the built-in tasks)

    try:
        return _TASKS[name]
    except KeyError:
        raise ConfigError(f"task: unknown task '{name}' (choose one of: {', '.join(sorted(_TASKS))})") from None


def task_names() -> list[str]:
    import tuneforge.tasks  # noqa: F401

    return sorted(_TASKS)


def split_outputs(arrays: tuple[np.ndarray, ...] | np.ndarray, lengths: Sequence[int], *,
                  per_token: bool) -> list[tuple[np.ndarray, ...]]:
    """Cut batched model outputs into one tuple per feature, dropping padding.

    With ``per_token`` (NER logits, QA start/end logits) each output is sliced to the feature's own length;
    otherwise (classification logits) rows are kept whole.
    """
    if isinstance(arrays, np.ndarray):
        arrays = (arrays,)
    return [tuple(a[i][:n] if per_token else a[i] for a in arrays) for i, n in enumerate(lengths)]
