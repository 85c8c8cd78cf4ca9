"""Sequence classification on top of ``AutoModelForSequenceClassification``.

A run fitted with a calibration or a reject option (:mod:`.confidence`) is served by the task bound to it
(:meth:`ClassificationTask.for_run`): its decoding applies the temperature and the threshold, its scoring adds the
calibration and out-of-scope metrics.
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data.cleaning import CleanOptions, CleanReport
from tuneforge.data.dataset import Dataset
from tuneforge.data.splitting import SplitKeys
from tuneforge.errors import DataProblem, RunError
from tuneforge.tasks.base import Encoded
from tuneforge.tasks.classification.calibration import calibration_metrics
from tuneforge.tasks.classification.confidence import MANIFEST_KEY, Confidence, fit_confidence
from tuneforge.tasks.classification.data import clean_classification, read_classification
from tuneforge.tasks.common import load_with_head, softmax
from tuneforge.tasks.datasets import read_options
from tuneforge.tasks.encoder import EncoderTask, clip_texts

__all__ = ["ClassificationTask"]

#: the label id of an example whose class is not one of the head's (an out-of-scope dev example): no loss
IGNORE_INDEX = -100


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


class ClassificationTask(EncoderTask):
    name = "classification"
    columns: tuple[str, ...] = ("text", "text_pair", "label")
    label_noun = "class"
    multi_label_capable = True
    sequence_level = True
    auto_model_kind = "sequence-classification"
    per_token = False
    main_metric = "accuracy"
    default_max_length = 256
    closed_label_set = True
    detect_order = 100  # the fallback: any file that no other task recognises is read as classification
    #: the calibration and reject option of the run this task is bound to (None: the registered, unbound task)
    confidence: Confidence | None = None

    # --- a run's confidence policy (confidence.py) ----------------------------------------------------------

    def with_confidence(self, confidence: Confidence | None) -> ClassificationTask:
        """This task bound to a run's policy: decoding and scoring apply it."""
        bound = copy.copy(self)
        bound.confidence = confidence
        return bound

    def for_run(self, manifest: dict[str, Any]) -> ClassificationTask:
        """The task as the run of ``manifest`` predicts: bound to its calibration and reject option, if any."""
        try:
            confidence = Confidence.from_manifest(manifest)
        except ValueError as e:
            raise RunError(f"the run's manifest is damaged: {e}", hint="Train the run again.") from None
        return self if confidence is None else self.with_confidence(confidence)

    def describe_run(self, manifest: dict[str, Any]) -> list[str]:
        """What a finished run's calibration and reject option give on its dev set (for ``train``'s output)."""
        bound = self.for_run(manifest)
        return bound.confidence.summary() if bound.confidence is not None else []

    def run_manifest(self) -> dict[str, Any]:
        """What a run trained with this bound task records in its manifest: its policy."""
        return {} if self.confidence is None else {MANIFEST_KEY: self.confidence.to_json()}

    def fit_confidence(self, outputs: list[tuple[np.ndarray, ...]], examples: Sequence[dict[str, Any]],
                       labels: list[str], *, oos_label: str | None, reject: str, target: float,
                       calibrate: bool) -> Confidence:
        """Fit a run's policy on its dev outputs (:func:`.confidence.fit_confidence`)."""
        logits = np.stack([o[0] for o in outputs]) if outputs else np.zeros((0, len(labels)))
        return fit_confidence(logits, [str(ex["label"]) for ex in examples], labels, oos_label=oos_label,
                              reject=reject, target=target, calibrate=calibrate)

    def reference_labels(self, labels: list[str]) -> list[str]:
        """The labels data scored against the run may hold: the head's, and the run's out-of-scope label."""
        oos = self.confidence.oos_label if self.confidence is not None else None
        return labels if oos is None or oos in labels else [*labels, oos]

    def probabilities(self, logits: np.ndarray, *, multi_label: bool) -> np.ndarray:
        """Class probabilities of stacked logits (sigmoid for multi-label), at the run's temperature."""
        if multi_label:
            return _sigmoid(logits)
        return softmax(np.asarray(logits) / (self.confidence.temperature if self.confidence else 1.0), axis=-1)

    # --- data: the reader and cleaner live in data.py -------------------------------------------------------

    def read(self, path: str | os.PathLike[str], **options: Any) -> Dataset:
        return read_classification(path, read_options(self, options), task=self.name)

    def clean(self, ds: Dataset, options: CleanOptions) -> tuple[Dataset, CleanReport]:
        return clean_classification(ds, options)

    def split_keys(self, examples: Sequence[dict[str, Any]]) -> SplitKeys:
        """Stratified by label (multi-label: by each example's first label); unlabelled data splits at random."""
        keys: list[Any] = []
        for ex in examples:
            label = ex["label"]
            if label is None:
                return SplitKeys()  # unlabelled data: nothing to stratify on
            keys.append((label[0] if label else "") if isinstance(label, list) else label)
        return SplitKeys(strata=keys)

    def recognises(self, columns: Sequence[str]) -> bool:
        return True

    def label_occurrences(self, example: dict[str, Any]) -> list[str]:
        label = example.get("label")
        return [str(x) for x in (label if isinstance(label, list) else [label]) if x is not None]

    def parse_input(self, item: Any, index: int) -> dict[str, Any] | DataProblem:
        """A raw input (a string, or ``{"text", "text_pair"}``) as an example, or the problem with it."""
        text = item if isinstance(item, str) else item.get("text") if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip():
            return DataProblem(f"input {index + 1}", None, "text", "empty or missing text", "pass a non-empty string")
        pair = item.get("text_pair") if isinstance(item, dict) else None
        return {"text": text, "text_pair": pair, "label": None}

    def _tokenize_for_count(self, examples: Sequence[dict[str, Any]], tokenizer: Any) -> Any:
        if any(e.get("text_pair") for e in examples):
            return tokenizer([e["text"] for e in examples], [e.get("text_pair") or "" for e in examples])
        return tokenizer([e["text"] for e in examples])

    def label_list(self, examples: Sequence[dict[str, Any]], multi_label: bool) -> list[str]:
        seen: set[str] = set()
        for ex in examples:
            lab = ex.get("label")
            if lab is None:
                continue
            seen.update(lab if isinstance(lab, list) else [lab])
        return sorted(seen)

    def build_model(self, base_path: Path, labels: list[str], *, multi_label: bool, **kwargs: Any) -> Any:
        from transformers import AutoModelForSequenceClassification

        problem = "multi_label_classification" if multi_label else "single_label_classification"
        return load_with_head(AutoModelForSequenceClassification, base_path, labels, problem_type=problem, **kwargs)

    def encode(self, examples: Sequence[dict[str, Any]], tokenizer: Any, labels: list[str], *,
               max_length: int, stride: int = 128, with_labels: bool = True, multi_label: bool = False) -> Encoded:
        texts = clip_texts([ex["text"] for ex in examples], tokenizer, max_length)
        has_pairs = any(ex.get("text_pair") is not None for ex in examples)
        if has_pairs:
            pairs = clip_texts([ex.get("text_pair") or "" for ex in examples], tokenizer, max_length)
            enc = tokenizer(texts, pairs, truncation="longest_first", max_length=max_length)
            full = tokenizer(texts, pairs, truncation=False)
        else:
            enc = tokenizer(texts, truncation=True, max_length=max_length)
            full = None
        index = {label: i for i, label in enumerate(labels)}
        features: list[dict[str, Any]] = []
        truncated = 0
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        for i, ex in enumerate(examples):
            f = {k: enc[k][i] for k in keys}
            n_full = len(full["input_ids"][i]) if full is not None else len(f["input_ids"])
            if n_full > max_length or (full is None and n_full >= max_length):
                truncated += 1
            if with_labels:
                lab = ex.get("label")
                if multi_label:
                    vec = [0.0] * len(labels)
                    for name in lab or []:
                        vec[index[name]] = 1.0
                    f["labels"] = vec
                else:
                    f["labels"] = index.get(str(lab), IGNORE_INDEX)
            features.append(f)
        return Encoded(features=features, example_index=list(range(len(examples))), n_examples=len(examples),
                       truncated=truncated)

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def decode(self, outputs: list[tuple[np.ndarray, ...]], enc: Encoded, examples: Sequence[dict[str, Any]],
               labels: list[str], *, multi_label: bool = False) -> list[dict[str, Any]]:
        if self.confidence is not None and not multi_label:
            return self.confidence.decode(np.stack([o[0] for o in outputs]) if outputs else
                                          np.zeros((0, len(labels))), labels)
        preds: list[dict[str, Any]] = []
        for (logits, *_rest) in outputs:
            if multi_label:
                p = _sigmoid(logits)
                chosen = [labels[j] for j in np.flatnonzero(p >= 0.5)]
                scores = {labels[j]: round(float(p[j]), 6) for j in range(len(labels))}
                preds.append({"labels": chosen, "scores": scores})
            else:
                p = softmax(logits)
                j = int(p.argmax())
                top = np.argsort(-p)[: min(5, len(labels))]
                preds.append({"label": labels[j], "score": round(float(p[j]), 6),
                              "scores": {labels[k]: round(float(p[k]), 6) for k in top}})
        return preds

    def score(self, predictions: list[dict[str, Any]], examples: Sequence[dict[str, Any]], labels: list[str], *,
              multi_label: bool = False) -> dict[str, Any]:
        from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

        if multi_label:
            from sklearn.preprocessing import MultiLabelBinarizer

            mlb = MultiLabelBinarizer(classes=labels)
            y_true = mlb.fit_transform([ex["label"] or [] for ex in examples])
            y_pred = mlb.transform([p["labels"] for p in predictions])
            p, r, f, s = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
            return {
                "accuracy": float(accuracy_score(y_true, y_pred)),  # exact match of the whole label set
                "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
                "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
                "hamming_accuracy": float((y_true == y_pred).mean()),
                "n": len(examples),
                "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                    "support": int(s[i])} for i, lab in enumerate(labels)},
            }
        scores = self._single_label_scores(predictions, examples, labels)
        if self.confidence is not None and all("ood" in pr for pr in predictions):
            scores.update(self.confidence.metrics(predictions, examples))
        else:
            # how well the scores are calibrated (a reject option's metrics need its decoding, which an ensemble of
            # such runs does not have)
            scores.update(calibration_metrics(np.array([pr["score"] for pr in predictions], dtype=np.float64),
                                              np.array([pr["label"] == ex["label"] for pr, ex in
                                                        zip(predictions, examples, strict=True)], dtype=bool)))
        return scores

    def _single_label_scores(self, predictions: list[dict[str, Any]], examples: Sequence[dict[str, Any]],
                             labels: list[str]) -> dict[str, Any]:
        from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

        # references may hold labels the model never saw: keep them as their own classes so they count as errors
        extra = sorted({ex["label"] for ex in examples} - set(labels))
        classes = list(labels) + extra
        y_true = [ex["label"] for ex in examples]
        y_pred = [pr["label"] for pr in predictions]
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
        present = [i for i, c in enumerate(classes) if s[i] > 0 or c in Counter(y_pred)]
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=[classes[i] for i in present], average="macro",
                                       zero_division=0)),
            "micro_f1": float(f1_score(y_true, y_pred, labels=classes, average="micro", zero_division=0)),
            "weighted_f1": float(f1_score(y_true, y_pred, labels=classes, average="weighted", zero_division=0)),
            "n": len(examples),
            "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(s[i])} for i, c in enumerate(classes)},
            "confusion_matrix": {"labels": classes,
                                 "matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist()},
        }

    def describe(self, prediction: dict[str, Any], example: dict[str, Any]) -> tuple[bool, str]:
        text = example["text"] if example.get("text_pair") is None else f"{example['text']} ‖ {example['text_pair']}"
        if "labels" in prediction:
            gold = sorted(example.get("label") or [])
            pred = sorted(prediction["labels"])
            return gold != pred, f"{text!r}: expected {gold}, predicted {pred}"
        single = example.get("label")
        shown = f"`{prediction['label']}` ({prediction['score']:.2f})"
        if prediction.get("rejected"):
            shown = f"`{prediction['label']}` (rejected; best `{prediction['best_label']}` {prediction['score']:.2f})"
        return single != prediction["label"], f"{text!r}: expected `{single}`, predicted {shown}"

    def public_prediction(self, prediction: dict[str, Any]) -> dict[str, Any]:
        """Without the out-of-scope scores that only scoring reads."""
        return {k: v for k, v in prediction.items() if k != "ood"}
