"""What a serving backend is: it loads a trained run folder (or a base encoder) as a :class:`LoadedModel`, which
validates one request's inputs and runs the prepared inputs of many requests at once.

A new backend (ONNX Runtime, int8, ...) is a class of this shape in its own module plus one
:func:`~tuneforge.inference.backends.register_backend` call; the service and the API do not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Backend", "LoadedModel", "ServedPredictor"]


class LoadedModel(Protocol):
    """A model ready to serve. ``prepare`` validates one request's inputs (raising DataError) so that a bad
    request fails alone, before it joins a batch; ``run`` runs prepared items of many requests at once."""

    #: the task's name (``"embedding"`` for a base encoder), for metrics
    task: str
    #: memory the model holds, for the model cache's budget
    nbytes: int

    def prepare(self, inputs: Sequence[Any]) -> list[Any]: ...

    def run(self, items: list[Any]) -> list[Any]: ...

    def count_tokens(self, items: list[Any]) -> int: ...


class Backend(Protocol):
    """Loads models for serving."""

    def load_predictor(self, path: Path) -> LoadedModel:
        """A finished run folder (one model or an ensemble)."""
        ...

    def load_embedder(self, path: Path) -> LoadedModel:
        """A base encoder folder, or a finished run folder of an encoder task (its fine-tuned encoder), serving
        sentence embeddings."""
        ...


class ServedPredictor:
    """A run's predictor (torch, ONNX Runtime, or an ensemble with the same interface) served as a
    :class:`LoadedModel`: inputs parsed by the task, predictions as users see them, tokens as the task counts them.
    A subclass sets ``predictor``, ``task`` and ``nbytes``."""

    predictor: Any

    def prepare(self, inputs: Sequence[Any]) -> list[Any]:
        return self.predictor.to_examples(inputs)

    def run(self, items: list[Any]) -> list[Any]:
        task = self.predictor.task
        return [task.public_prediction(p) for p in self.predictor.predict_examples(items)]

    def count_tokens(self, items: list[Any]) -> int:
        p = self.predictor
        return p.task.count_tokens(items, p.tokenizer, int(p.manifest["max_length"]))
