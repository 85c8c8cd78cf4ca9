"""How encoder tasks run a model: batched forward passes over features (sorted by length so that each batch pads
as little as possible), the shared encode -> forward -> decode path, and the auto hyperparameters of encoders."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["EncoderTask", "clip_texts", "encoder_auto_hyperparameters", "forward_features", "model_dtype_context"]

_OUTPUT_KEYS = ("logits", "start_logits", "end_logits")
#: characters per token of max_length kept before counting tokens (a token is rarely longer than 4)
_CHARS_PER_TOKEN = 16


#: tokens a cut text must keep past max_length, so that the word cut in half cannot reach the kept tokens
_CLIP_MARGIN = 16


def clip_texts(texts: Sequence[str], tokenizer: Any, max_length: int) -> list[str]:
    """``texts`` with each huge one cut to a prefix that surely holds its first ``max_length`` tokens, so that
    tokenizing with truncation gives the same features without tokenizing the whole text (a 100,000-character input
    costs seconds of CPU otherwise). A cut prefix with too few tokens (long blanks, very long words) is not cut."""
    chars = max_length * _CHARS_PER_TOKEN
    out = list(texts)
    cut = [i for i, t in enumerate(texts) if isinstance(t, str) and len(t) > chars]
    if not cut:
        return out
    enc = tokenizer([texts[i][:chars] for i in cut], add_special_tokens=False)
    for i, ids in zip(cut, enc["input_ids"], strict=True):
        if len(ids) >= max_length + _CLIP_MARGIN:
            out[i] = texts[i][:chars]
    return out


def _clip(example: dict[str, Any], chars: int) -> tuple[dict[str, Any], bool]:
    """``example`` with every text cut to ``chars`` characters and every word list to ``chars // 16`` words (a word
    makes at least one token), and whether anything was cut."""
    out: dict[str, Any] = {}
    cut = False
    words = max(1, chars // _CHARS_PER_TOKEN)
    for k, v in example.items():
        if isinstance(v, str) and len(v) > chars:
            v, cut = v[:chars], True
        elif isinstance(v, list) and v and all(isinstance(w, str) for w in v):
            if len(v) > words:
                v, cut = v[:words], True
            if any(len(w) > chars for w in v):
                v, cut = [w[:chars] for w in v], True
        out[k] = v
    return out, cut


def model_dtype_context(bf16: bool) -> Any:
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def forward_features(model: Any, features: Sequence[dict[str, Any]], collator: Callable[[list[dict[str, Any]]], Any],
                     *, batch_size: int = 64, bf16: bool = False,
                     on_batch: Callable[[int], None] | None = None) -> list[tuple[np.ndarray, ...]]:
    """Run ``model`` on every feature and return its outputs per feature, without padding, in input order."""
    import torch

    with torch.inference_mode():
        return _forward(model, features, collator, batch_size=batch_size, bf16=bf16, on_batch=on_batch)


def _forward(model: Any, features: Sequence[dict[str, Any]], collator: Callable[[list[dict[str, Any]]], Any], *,
             batch_size: int, bf16: bool, on_batch: Callable[[int], None] | None) -> list[tuple[np.ndarray, ...]]:
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    results: list[tuple[np.ndarray, ...] | None] = [None] * len(features)
    model_keys = ("input_ids", "attention_mask", "token_type_ids")
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        batch = collator([{k: features[i][k] for k in model_keys if k in features[i]} for i in idx])
        batch = {k: v.to(device) for k, v in batch.items() if k in model_keys}
        with model_dtype_context(bf16):
            out = model(**batch)
        arrays = [getattr(out, k).float().cpu().numpy() for k in _OUTPUT_KEYS if getattr(out, k, None) is not None]
        per_token = arrays[0].ndim == 3 or len(arrays) > 1
        for j, i in enumerate(idx):
            n = len(features[i]["input_ids"])
            results[i] = tuple(a[j][:n] if per_token else a[j] for a in arrays)
        if on_batch:
            on_batch(len(idx))
    return [r for r in results if r is not None]


def encoder_auto_hyperparameters(*, n_train: int, encoder_size: int, sequence_level: bool) -> dict[str, Any]:
    """Learning rate and batch size left as auto, by the size of the encoder (embeddings excluded) and of the data.

    Small encoders want a larger learning rate than BERT-base's usual 5e-5, which leaves all-MiniLM-L6-v2 (11M
    encoder parameters) near chance on a few hundred examples; small data wants small batches, i.e. more
    updates in the same epochs. Measured here: 400 SST-2 sentences, 3 epochs, minilm — batch 8 at 2e-4 gives
    0.77 validation accuracy (mean of 3 seeds), batch 16 at 1e-4 0.76; 600 ChnSentiCorp reviews, 2 epochs,
    e5-multilingual (21M) — 1e-4 at batch 16 gives 0.87, at 2e-4 training does not converge; on 1,500 reviews
    1e-4 does not converge either, hence 5e-5 for sequence-level tasks (classification) from 1,000 examples.
    """
    small_data = n_train < 1000
    small_model = encoder_size < 15_000_000
    if encoder_size < 2_000_000:
        lr = 3e-4
    elif small_model:
        lr = 2e-4 if small_data else 1e-4
    elif encoder_size < 50_000_000:
        # e5-multilingual (12 layers): classification at 1e-4 collapsed to one class on 1,500 ChnSentiCorp
        # reviews (loss flat at 0.70) while 600 trained well; halve it once there are enough steps
        lr = 5e-5 if not small_data and sequence_level else 1e-4
    else:
        lr = 5e-5
    if small_data and small_model:
        bs = 8
    else:
        bs = 32 if n_train >= 5000 and sequence_level else 16
    return {"learning_rate": lr, "batch_size": bs}


class EncoderTask:
    """What every encoder task shares: how a model is run (encode -> batched forward -> decode) and the defaults
    of the protocol's optional attributes. A task class inherits it and overrides what differs."""

    name: str
    #: fields of a normalized example of this task
    columns: tuple[str, ...] = ()
    #: whether the head predicts from a label list (classification classes, NER entity types); QA predicts spans
    labelled: bool = True
    #: what one label is called in reports ("class", "entity type")
    label_noun: str = "label"
    #: whether examples may carry several labels
    multi_label_capable: bool = False
    #: how an input longer than max_length is handled, for the user ("truncated.")
    long_input_note: str = "truncated."
    #: whether the whole sequence gets one prediction (auto hyperparameters favour larger batches then)
    sequence_level: bool = False
    #: whether a long input is split into overlapping windows (``stride`` tokens apart) instead of truncated
    windowed: bool = False
    #: the transformers head a model of this task has: "sequence-classification", "token-classification" or
    #: "question-answering" (methods load and wrap models by it)
    auto_model_kind: str = ""
    #: whether the task's models return logits (encoder tasks) or generate text
    generative: bool = False
    #: whether data scored against a model must use only the labels it was trained on
    closed_label_set: bool = False
    #: the order in which tasks are asked whether they recognise a file's columns (lower first)
    detect_order: int = 50

    def clean(self, ds: Any, options: Any) -> Any:
        """A cleaned copy of ``ds`` and its report; a task without a cleaner refuses."""
        from tuneforge.errors import ConfigError

        raise ConfigError(f"task: the {self.name} task has no cleaner")

    def record(self, example: dict[str, Any]) -> dict[str, Any]:
        """The example's fields in ``columns`` order, those that are None left out."""
        return {k: example[k] for k in self.columns if example.get(k) is not None}

    def split_keys(self, examples: Sequence[dict[str, Any]]) -> Any:
        """A random split (no strata, no groups)."""
        from tuneforge.data.splitting import SplitKeys

        return SplitKeys()

    def recognises(self, columns: Sequence[str]) -> bool:
        """Never guessed from columns unless the task says how."""
        return False

    def label_occurrences(self, example: dict[str, Any]) -> list[str]:
        return []

    def auto_hyperparameters(self, *, n_train: int, encoder_size: int) -> dict[str, Any]:
        return encoder_auto_hyperparameters(n_train=n_train, encoder_size=encoder_size,
                                            sequence_level=self.sequence_level)

    def predict(self, model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], labels: list[str], *,
                max_length: int, stride: int = 128, multi_label: bool = False, batch_size: int = 64,
                bf16: bool = False, on_batch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Predictions of ``model`` for examples: the one path shared by evaluation, ``predict`` and serving."""
        if not examples:
            return []
        enc = self.encode(examples, tokenizer, labels, max_length=max_length,  # type: ignore[attr-defined]
                          stride=stride, with_labels=False, multi_label=multi_label)
        outputs = forward_features(model, enc.features, self.collator(tokenizer),  # type: ignore[attr-defined]
                                   batch_size=batch_size, bf16=bf16, on_batch=on_batch)
        return self.decode(outputs, enc, examples, labels, multi_label=multi_label)  # type: ignore[attr-defined]

    def public_prediction(self, prediction: dict[str, Any]) -> dict[str, Any]:
        """A prediction as users see it (CLI, API): by default all of it."""
        return prediction

    def count_tokens(self, examples: Sequence[dict[str, Any]], tokenizer: Any, max_length: int | None = None) -> int:
        """Tokens of the model inputs the examples make (special tokens included, cut at ``max_length``): what the
        usage ledger meters for training and prediction."""
        if not examples:
            return 0
        if not max_length:
            return int(sum(len(ids) for ids in self._tokenize_for_count(examples, tokenizer)["input_ids"]))
        # Never tokenize a whole huge input to count at most max_length of its tokens: tokenize a prefix that
        # surely holds them, and a longer one only for an input whose prefix gave fewer (long tokens, blanks).
        total, pending, chars = 0, list(examples), max_length * _CHARS_PER_TOKEN
        while pending:
            clipped = [_clip(ex, chars) for ex in pending]
            enc = self._tokenize_for_count([c for c, _ in clipped], tokenizer)
            retry = []
            for ex, (_, cut), ids in zip(pending, clipped, enc["input_ids"], strict=True):
                if cut and len(ids) < max_length:
                    retry.append(ex)
                else:
                    total += min(len(ids), max_length)
            pending, chars = retry, chars * 8
        return int(total)

    def _tokenize_for_count(self, examples: Sequence[dict[str, Any]], tokenizer: Any) -> Any:
        raise NotImplementedError
