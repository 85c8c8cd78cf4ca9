"""Sentence embeddings from a base encoder: mean pooling over the tokens, then L2 normalisation (the recipe
all-MiniLM-L6-v2 and E5 were trained with)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import DataError, DataProblem
from tuneforge.models.tensors import mean_pool, model_nbytes

__all__ = ["Embedder"]


class Embedder:
    """A base encoder that turns texts into unit-length vectors."""

    task = "embedding"

    def __init__(self, path: Path, *, max_length: int = 256, batch_size: int = 64) -> None:
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.logging.set_verbosity_error()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path), use_safetensors=True, trust_remote_code=False)
        self.model.eval()
        self.max_length = min(max_length, int(getattr(self.model.config, "max_position_embeddings", 512)))
        self.batch_size = batch_size
        self.nbytes = model_nbytes(self.model)
        self.dim = int(self.model.config.hidden_size)

    def prepare(self, inputs: Sequence[Any]) -> list[str]:
        problems = [DataProblem(f"input {i + 1}", None, "input", "must be a non-empty string",
                                "pass text; token arrays are not supported")
                    for i, x in enumerate(inputs) if not isinstance(x, str) or not x.strip()]
        if problems:
            raise DataError(problems)
        return list(inputs)

    def count_tokens(self, items: list[str]) -> int:
        enc = self.tokenizer(items, truncation=True, max_length=self.max_length)
        return int(sum(len(x) for x in enc["input_ids"]))

    def run(self, items: list[str]) -> list[np.ndarray]:
        return list(self.embed(items))

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths pad less
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                idx = order[b: b + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                vec = torch.nn.functional.normalize(mean_pool(hidden, enc["attention_mask"]), p=2, dim=1)
                out[idx] = vec.float().numpy()
        return out
