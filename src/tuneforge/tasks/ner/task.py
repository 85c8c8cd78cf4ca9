"""Token classification: BIO labels on the first sub-word of every word; the most probable valid BIO sequence
decoded (constrained Viterbi) to entities with character spans."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data.cleaning import CleanOptions, CleanReport
from tuneforge.data.dataset import Dataset
from tuneforge.errors import DataProblem
from tuneforge.tasks.base import Encoded
from tuneforge.tasks.common import is_cjk, join_tokens, load_with_head, softmax, split_words
from tuneforge.tasks.datasets import read_options
from tuneforge.tasks.encoder import EncoderTask
from tuneforge.tasks.ner.data import ALIASES, clean_ner, read_ner

__all__ = ["NerTask", "bio_to_spans", "bio_viterbi", "kept_positions", "label_positions"]

IGNORE = -100


def bio_to_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities as (type, first word, last word + 1). An ``I-X`` that does not continue an ``X`` entity starts a
    new one, as conlleval and seqeval's default mode do."""
    spans: list[tuple[str, int, int]] = []
    cur: list[Any] | None = None
    for i, t in enumerate(tags):
        if t == "O" or t is None:
            if cur:
                spans.append((cur[0], cur[1], i))
            cur = None
            continue
        prefix, _, typ = t.partition("-")
        if prefix == "B" or cur is None or cur[0] != typ:
            if cur:
                spans.append((cur[0], cur[1], i))
            cur = [typ, i]
    if cur:
        spans.append((cur[0], cur[1], len(tags)))
    return spans


@functools.lru_cache(maxsize=32)
def _bio_constraints(labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Additive log-scores for BIO validity: ``forbid[prev, cur]`` is -inf where ``cur`` is an ``I-X`` that does
    not follow ``B-X`` or ``I-X``, and ``start`` is -inf for the ``I-`` tags (no entity starts inside itself).
    Computed once per label set, not per sentence."""
    inside = [lab[2:] if lab.startswith("I-") else None for lab in labels]
    allowed = np.ones((len(labels), len(labels)), dtype=bool)  # allowed[prev, cur]
    for j, typ in enumerate(inside):
        if typ is not None:
            allowed[:, j] = [lab in (f"B-{typ}", f"I-{typ}") for lab in labels]
    start = np.where([t is None for t in inside], 0.0, -np.inf)
    return np.where(allowed, 0.0, -np.inf), start


def bio_viterbi(probs: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """The most probable tag sequence that is valid BIO: an ``I-X`` only after ``B-X`` or ``I-X``.

    Per-word argmax can emit ``O I-X`` or ``B-X I-Y``, which scorers then read as broken or extra entities; a
    CRF layer learns to avoid them. This is the decoding half of that for free: Viterbi over the per-word
    log-probabilities with the invalid transitions forbidden (AllenNLP's ``allowed_transitions``). When the
    argmax sequence is already valid it is returned unchanged.
    """
    n, k = probs.shape
    if n == 0:
        return np.zeros(0, dtype=int)
    forbid, start = _bio_constraints(tuple(labels))
    logp = np.log(np.clip(probs, 1e-12, None))
    score = logp[0] + start
    back = np.zeros((n, k), dtype=int)
    for t in range(1, n):
        cand = score[:, None] + forbid  # [prev, cur]
        back[t] = cand.argmax(0)
        score = cand.max(0) + logp[t]
    out = np.zeros(n, dtype=int)
    out[-1] = int(score.argmax())
    for t in range(n - 1, 0, -1):
        out[t - 1] = back[t, out[t]]
    return out


_BARE_PREFIXES = {"▁", "Ġ", "Ċ", ""}


def label_positions(word_ids: Sequence[int | None], tokens: Sequence[str]) -> list[int]:
    """The token position that carries each word's label: its first sub-token with content.

    SentencePiece tokenizers (XLM-R, e5) split a pre-split word into a bare word-start marker ``▁`` and the word
    itself when the marker does not merge with it, as for every single Chinese character; labelling the marker
    would put every character's label on the same meaningless token.
    """
    positions: dict[int, int] = {}
    for pos, (w, tok) in enumerate(zip(word_ids, tokens, strict=True)):
        if w is None:
            continue
        if w not in positions or (tokens[positions[w]] in _BARE_PREFIXES and tok not in _BARE_PREFIXES
                                  and positions[w] == pos - 1):
            positions[w] = pos
    # -1 marks a word that produced no token at all (it is predicted O); words cut by truncation are left out
    return [positions.get(w, -1) for w in range(max(positions) + 1)] if positions else []


def kept_positions(word_ids: Sequence[int | None], tokens: Sequence[str], words: Sequence[str],
                   max_length: int) -> list[int]:
    """The token positions fed to the model: all of them, less the bare ``▁`` a SentencePiece tokenizer puts
    before a pre-split Chinese character that follows another one, then cut to ``max_length``.

    Chinese is written without spaces, so in the sentence itself those characters have no word-start marker
    between them; with the markers the model would read a space between every two characters, a text it never
    saw in pretraining, at twice the length. The special tokens at both ends are kept when cutting.
    """
    keep = []
    for pos, (w, tok) in enumerate(zip(word_ids, tokens, strict=True)):
        if (w is not None and w > 0 and tok == "▁" and pos + 1 < len(word_ids) and word_ids[pos + 1] == w
                and is_cjk(words[w][:1]) and is_cjk(words[w - 1][-1:])):
            continue
        keep.append(pos)
    if len(keep) > max_length:
        last_special = word_ids[keep[-1]] is None
        keep = keep[:max_length - 1] + [keep[-1]] if last_special else keep[:max_length]
    return keep


class NerTask(EncoderTask):
    name = "ner"
    columns: tuple[str, ...] = ("tokens", "tags")
    label_noun = "entity type"
    auto_model_kind = "token-classification"
    per_token = True
    main_metric = "f1"
    default_max_length = 256
    detect_order = 10

    # --- data: the reader and cleaner live in data.py -------------------------------------------------------

    def read(self, path: str | os.PathLike[str], **options: Any) -> Dataset:
        return read_ner(path, read_options(self, options), task=self.name)

    def clean(self, ds: Dataset, options: CleanOptions) -> tuple[Dataset, CleanReport]:
        return clean_ner(ds, options)

    def recognises(self, columns: Sequence[str]) -> bool:
        """A tokens (or words) column."""
        return bool({c.lower() for c in columns} & set(ALIASES["tokens"]))

    def label_occurrences(self, example: dict[str, Any]) -> list[str]:
        """The type of each entity (one per B- tag)."""
        return [t[2:] for t in example.get("tags") or [] if t.startswith("B-")]


    def parse_input(self, item: Any, index: int) -> dict[str, Any] | DataProblem:
        """A raw text (or ``{"text"}``) split into words with their character spans, or the problem with it."""
        text = item if isinstance(item, str) else item.get("text") if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip():
            return DataProblem(f"input {index + 1}", None, "text", "empty or missing text", "pass a non-empty string")
        words = split_words(text)
        return {"tokens": [w for w, _, _ in words], "tags": None, "spans": [(s, e) for _, s, e in words],
                "source_text": text}

    def _tokenize_for_count(self, examples: Sequence[dict[str, Any]], tokenizer: Any) -> Any:
        return tokenizer([e["tokens"] for e in examples], is_split_into_words=True)

    def label_list(self, examples: Sequence[dict[str, Any]], multi_label: bool) -> list[str]:
        types = sorted({t[2:] for ex in examples for t in (ex.get("tags") or []) if t != "O"})
        return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]

    def build_model(self, base_path: Path, labels: list[str], *, multi_label: bool, **kwargs: Any) -> Any:
        from transformers import AutoModelForTokenClassification

        return load_with_head(AutoModelForTokenClassification, base_path, labels, **kwargs)

    def encode(self, examples: Sequence[dict[str, Any]], tokenizer: Any, labels: list[str], *,
               max_length: int, stride: int = 128, with_labels: bool = True, multi_label: bool = False) -> Encoded:
        index = {label: i for i, label in enumerate(labels)}
        enc = tokenizer([list(ex["tokens"]) for ex in examples], is_split_into_words=True, truncation=False)
        features: list[dict[str, Any]] = []
        meta: list[dict[str, Any]] = []
        truncated = 0
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        for i, ex in enumerate(examples):
            all_ids, all_tokens = enc.word_ids(i), enc.tokens(i)
            keep = kept_positions(all_ids, all_tokens, list(ex["tokens"]), max_length)
            first = label_positions([all_ids[p] for p in keep], [all_tokens[p] for p in keep])
            if len(first) < len(ex["tokens"]):
                truncated += 1
            f = {k: [enc[k][i][p] for p in keep] for k in keys}
            if with_labels and ex.get("tags") is not None:
                lab = [IGNORE] * len(f["input_ids"])
                for w, pos in enumerate(first):
                    if pos >= 0:
                        lab[pos] = index.get(ex["tags"][w], 0)  # a tag unseen in training counts as O for the loss
                f["labels"] = lab
            features.append(f)
            meta.append({"first": first})
        return Encoded(features=features, example_index=list(range(len(examples))), meta=meta,
                       n_examples=len(examples), truncated=truncated)

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE)

    def decode(self, outputs: list[tuple[np.ndarray, ...]], enc: Encoded, examples: Sequence[dict[str, Any]],
               labels: list[str], *, multi_label: bool = False) -> list[dict[str, Any]]:
        preds = []
        for (logits, *_r), m, ex in zip(outputs, enc.meta, examples, strict=True):
            first = np.asarray(m["first"], dtype=int)
            probs = softmax(logits[np.maximum(first, 0)]) if len(first) else np.zeros((0, len(labels)))
            if len(first):
                probs[first < 0] = np.eye(len(labels))[0]  # a word without tokens: O
            ids = bio_viterbi(probs, labels)
            tags = [labels[j] for j in ids] + ["O"] * (len(ex["tokens"]) - len(ids))  # truncated words: O
            if ex.get("spans") is not None:
                text, words = str(ex["source_text"]), list(ex["spans"])
            else:
                text, words = join_tokens(list(ex["tokens"]))
            entities = []
            for typ, a, b in bio_to_spans(tags):
                start, end = words[a][0], words[b - 1][1]
                score = float(np.mean([probs[k, ids[k]] for k in range(a, min(b, len(ids)))])) if a < len(ids) else 0.0
                entities.append({"type": typ, "text": text[start:end], "start": start, "end": end,
                                 "score": round(score, 6), "words": [a, b]})
            preds.append({"tags": tags, "entities": entities})
        return preds

    def public_prediction(self, prediction: dict[str, Any]) -> dict[str, Any]:
        """The entities, without the word tags and word positions (what scoring uses)."""
        out = {k: v for k, v in prediction.items() if k != "tags"}
        out["entities"] = [{k: v for k, v in e.items() if k != "words"} for e in prediction.get("entities", [])]
        return out

    def score(self, predictions: list[dict[str, Any]], examples: Sequence[dict[str, Any]], labels: list[str], *,
              multi_label: bool = False) -> dict[str, Any]:
        from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

        y_true = [list(ex["tags"]) for ex in examples]
        y_pred = [p["tags"] for p in predictions]
        rep = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
        per_type = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
                        "support": int(v["support"])}
                    for k, v in rep.items() if k not in ("micro avg", "macro avg", "weighted avg")}
        flat_t = [t for s in y_true for t in s]
        flat_p = [t for s in y_pred for t in s]
        return {
            "precision": float(precision_score(y_true, y_pred, zero_division=0)),
            "recall": float(recall_score(y_true, y_pred, zero_division=0)),
            "f1": float(f1_score(y_true, y_pred, zero_division=0)),
            "macro_f1": float(rep.get("macro avg", {}).get("f1-score", 0.0)),
            "token_accuracy": float(np.mean([a == b for a, b in zip(flat_t, flat_p, strict=True)])) if flat_t else 0.0,
            "n": len(examples),
            "per_class": per_type,
        }

    def describe(self, prediction: dict[str, Any], example: dict[str, Any]) -> tuple[bool, str]:
        gold = {(t, a, b) for t, a, b in bio_to_spans(list(example["tags"]))}
        pred = {(t, a, b) for t, a, b in bio_to_spans(prediction["tags"])}
        toks = list(example["tokens"])

        def show(spans: set[tuple[str, int, int]]) -> str:
            return ", ".join(f"{' '.join(toks[a:b])}/{t}" for t, a, b in sorted(spans, key=lambda s: s[1])) or "none"

        text, _ = join_tokens(toks)
        return gold != pred, f"{text!r}: missed {show(gold - pred)}; spurious {show(pred - gold)}"
