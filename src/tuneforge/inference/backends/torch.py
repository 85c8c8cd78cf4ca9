"""PyTorch eager inference (fp32): the default backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneforge.inference.backends.base import LoadedModel
from tuneforge.models.tensors import model_nbytes

__all__ = ["TorchBackend", "TorchPredictor"]


class TorchPredictor:
    """A loaded run (a :class:`~tuneforge.inference.Predictor`, or an ensemble with the same interface) served as
    a :class:`LoadedModel`: predictions as users see them, tokens as the task counts them."""

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor
        self.task = self.predictor.task.name
        self.nbytes = model_nbytes(self.predictor.model)

    def prepare(self, inputs: Sequence[Any]) -> list[Any]:
        return self.predictor.to_examples(inputs)

    def run(self, items: list[Any]) -> list[Any]:
        task = self.predictor.task
        return [task.public_prediction(p) for p in self.predictor.predict_examples(items)]

    def count_tokens(self, items: list[Any]) -> int:
        p = self.predictor
        return p.task.count_tokens(items, p.tokenizer, int(p.manifest["max_length"]))


class TorchBackend:
    """PyTorch eager inference (fp32)."""

    name = "torch"

    def load_predictor(self, path: Path) -> LoadedModel:
        from tuneforge.inference.predictor import load_predictor

        return TorchPredictor(load_predictor(path))

    def load_embedder(self, path: Path) -> LoadedModel:
        from tuneforge.inference.embeddings import load_embedder

        return load_embedder(path)
