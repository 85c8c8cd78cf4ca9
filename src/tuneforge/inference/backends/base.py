"""What a serving backend is: it loads a trained run folder (or a base encoder) as a :class:`LoadedModel`, which
validates one request's inputs and runs the prepared inputs of many requests at once.

A new backend (ONNX Runtime, int8, ...) is a class of this shape in its own module plus one
:func:`~tuneforge.inference.backends.register_backend` call; the service and the API do not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Backend", "LoadedModel"]


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
