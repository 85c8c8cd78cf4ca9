"""Sentence embeddings: mean pooling over the tokens, then L2 normalisation (the recipe all-MiniLM-L6-v2 and E5
were trained with), from a base encoder or from the encoder of a fine-tuned run (any encoder task, any method:
its last hidden states, with adapters and virtual tokens applied, the head left out).

Inputs are cut to a prefix that surely holds ``max_length`` tokens before they are tokenized, so a huge input
costs no more than a long one (the same rule as the tasks' token counting).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError, DataError, DataProblem
from tuneforge.models.tensors import mean_pool, model_nbytes

__all__ = ["Embedder", "clip_texts", "load_embedder"]

#: characters per token of max_length kept before tokenizing (a token is rarely longer than 4)
CHARS_PER_TOKEN = 16
_MARGIN = 8

#: ``hidden(model, batch) -> (batch, tokens, hidden)`` last hidden states for a tokenized batch
HiddenStates = Callable[[Any, dict[str, Any]], Any]


def clip_texts(texts: Sequence[str], tokenizer: Any, max_length: int) -> list[str]:
    """Each text cut to a prefix whose tokens run past ``max_length`` (whole when it is shorter), so that
    tokenizing with ``truncation=True, max_length=max_length`` gives the tokens the whole text would give, without
    tokenizing a huge text whole.

    A prefix of ``max_length * 16`` characters is tried first; a text whose prefix gives too few tokens (long
    tokens, runs of blanks) is tried again with a prefix 8 times longer. The prefix must give ``_MARGIN`` tokens
    more than ``max_length``: only the tokens of the word cut at its end can differ from the whole text's."""
    out = list(texts)
    chars = max_length * CHARS_PER_TOKEN
    pending = [i for i, t in enumerate(out) if len(t) > chars]
    while pending:
        prefixes = [texts[i][:chars] for i in pending]
        ids = tokenizer(prefixes, truncation=True, max_length=max_length + _MARGIN)["input_ids"]
        retry = []
        for i, prefix, tokens in zip(pending, prefixes, ids, strict=True):
            if len(tokens) >= max_length + _MARGIN:
                out[i] = prefix
            else:
                retry.append(i)
        chars *= 8
        pending = [i for i in retry if len(texts[i]) > chars]  # the others are kept whole
    return out


def _last_hidden(model: Any, batch: dict[str, Any]) -> Any:
    """A transformers model with any head, or one wrapped by peft: its last hidden states; positions that peft
    prepended (virtual tokens) are dropped so they line up with the attention mask."""
    hidden = model(**batch, output_hidden_states=True).hidden_states[-1]
    n = batch["input_ids"].shape[1]
    return hidden[:, -n:] if hidden.shape[1] > n else hidden


def _base_hidden(model: Any, batch: dict[str, Any]) -> Any:
    return model(**batch).last_hidden_state


def _sentence_hidden(model: Any, batch: dict[str, Any]) -> Any:
    """A sentence classifier (SetFit, zero-shot): its encoder's hidden states (the head left out)."""
    keep = {k: v for k, v in batch.items()
            if k != "token_type_ids" or int(getattr(model.config, "type_vocab_size", 1)) > 1}
    return model.encoder(**keep).last_hidden_state


class TextEmbedder:
    """What every embedder shares, whatever runs it (torch here, ONNX Runtime in
    :mod:`tuneforge.inference.backends.onnx_runtime`): inputs checked, cut and counted the same way. A subclass sets
    ``tokenizer`` and ``max_length`` and implements ``embed``."""

    task = "embedding"
    tokenizer: Any
    max_length: int

    def prepare(self, inputs: Sequence[Any]) -> list[str]:
        """The texts, checked (every bad one reported at once). No tokenizer call here: this runs in the
        request's thread, and a fast tokenizer is used only in the batcher's (``run`` and ``count_tokens`` cut the
        texts)."""
        problems = [DataProblem(f"input {i + 1}", None, "input", "must be a non-empty string",
                                "pass text; token arrays are not supported")
                    for i, x in enumerate(inputs) if not isinstance(x, str) or not x.strip()]
        if problems:
            raise DataError(problems)
        return list(inputs)

    def count_tokens(self, items: list[str]) -> int:
        """Tokens the texts make, special tokens included, cut at ``max_length`` (what the usage ledger meters)."""
        enc = self.tokenizer(clip_texts(items, self.tokenizer, self.max_length), truncation=True,
                             max_length=self.max_length)
        return int(sum(len(x) for x in enc["input_ids"]))

    def run(self, items: list[str]) -> list[np.ndarray]:
        return list(self.embed(items))

    def embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class Embedder(TextEmbedder):
    """An encoder that turns texts into unit-length vectors. ``Embedder(path)`` loads a base encoder folder;
    :meth:`of_run` uses the encoder of a fine-tuned run folder."""

    def __init__(self, path: Path, *, max_length: int = 256, batch_size: int = 64) -> None:
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.logging.set_verbosity_error()
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModel.from_pretrained(str(path), use_safetensors=True, trust_remote_code=False)
        self._setup(model, tokenizer, _base_hidden, max_length=max_length, batch_size=batch_size)

    @classmethod
    def of_run(cls, run_dir: Path, *, batch_size: int = 64) -> Embedder:
        """The fine-tuned encoder of a finished run folder of an encoder task (classification, NER, QA; any
        method), with inputs cut at the run's ``max_length``. An ensemble or a generative run is refused."""
        from tuneforge.inference.predictor import Predictor, load_predictor
        from tuneforge.methods.sentence import SentenceClassifier

        predictor = load_predictor(run_dir)
        if not isinstance(predictor, Predictor):
            raise ConfigError("model: an ensemble is several models and has no single encoder to embed with; "
                              "use one of its runs")
        if predictor.task.generative:
            raise ConfigError(f"model: embeddings come from encoder models, not {predictor.task.name} models")
        model = predictor.model
        hidden = _sentence_hidden if isinstance(model, SentenceClassifier) else _last_hidden
        self = cls.__new__(cls)
        self._setup(model, predictor.tokenizer, hidden, max_length=int(predictor.manifest["max_length"]),
                    batch_size=batch_size)
        return self

    def _setup(self, model: Any, tokenizer: Any, hidden: HiddenStates, *, max_length: int, batch_size: int) -> None:
        model.eval()
        self.model, self.tokenizer, self._hidden = model, tokenizer, hidden
        config = model.config
        self.max_length = min(max_length, int(getattr(config, "max_position_embeddings", 512)))
        self.batch_size = batch_size
        self.nbytes = model_nbytes(model)
        self.dim = int(config.hidden_size)

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        texts = clip_texts(texts, self.tokenizer, self.max_length)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths pad less
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                idx = order[b: b + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                batch = {k: v.to(device) for k, v in enc.items()}
                hidden = self._hidden(self.model, batch).float()
                vec = torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), p=2, dim=1)
                out[idx] = vec.cpu().numpy()
        return out


def load_embedder(path: Path, *, batch_size: int = 64) -> Embedder:
    """A fine-tuned run folder (it has a run manifest) or a base encoder folder, ready to embed."""
    from tuneforge import runs

    path = Path(path)
    return Embedder.of_run(path, batch_size=batch_size) if runs.has_manifest(path) else Embedder(path,
                                                                                               batch_size=batch_size)
