"""A drift report: a window of inputs against the data a model was trained on, seen through the model itself.

The primary score is the domain classifier's ROC AUC on the model's own embeddings (the mean-pooled last hidden
states of its encoder, :class:`~tuneforge.inference.embeddings.Embedder`); the window drifted when it is above the
threshold. Beside it, each with its own flag: MMD on the same embeddings, the shift of the predicted labels (PSI
and a chi-square test against the predictions on the reference), the drop of the mean confidence (the top label's
probability) and the rate of unknown tokens (``[UNK]``) and of words the reference never has.

The reference is sampled to at most ``reference_size`` examples with a fixed seed (same report for the same
inputs); its vocabulary is taken from the whole file.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tuneforge import runs
from tuneforge.errors import ConfigError
from tuneforge.evaluation.drift.stats import chi_square_p, domain_classifier_auc, mmd_rbf, psi, shares

__all__ = ["DEFAULT_THRESHOLD", "METHOD", "THRESHOLDS_FILE", "DriftModel", "DriftReport", "RunModel",
           "drift_report", "example_text", "model_threshold", "reference_file", "write_model_threshold"]

#: the primary method and its default threshold (ROC AUC; 0.5 is "cannot tell them apart")
METHOD = "domain_classifier_auc"
DEFAULT_THRESHOLD = 0.6
#: a run folder's own drift settings (``{"threshold": 0.65}``), read by the CLI and the service
THRESHOLDS_FILE = "drift.json"
#: the secondary checks' thresholds (each reported with its own flag; only the primary decides ``drift``)
MMD_P = 0.05
PSI_THRESHOLD = 0.1
CHI_SQUARE_P = 0.05
CONFIDENCE_DROP = 0.1
UNSEEN_WORD_RISE = 0.1
UNK_RISE = 0.01

_WORD = re.compile(r"\w+", re.UNICODE)


class DriftModel(Protocol):
    """What a report needs of a model: its embeddings, its label probabilities (``None`` for a task without
    one label per input) and its tokenizer (for the unknown-token rate)."""

    @property
    def labels(self) -> list[str]: ...

    @property
    def tokenizer(self) -> Any: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def probabilities(self, examples: Sequence[dict[str, Any]]) -> np.ndarray | None: ...


class RunModel:
    """A finished run folder as a :class:`DriftModel`: the run's encoder embeds (the shared embedding code), and
    the same loaded model predicts (a sequence-level task: its label probabilities)."""

    def __init__(self, run_dir: Path, *, batch_size: int = 64) -> None:
        from tuneforge.inference.embeddings import Embedder
        from tuneforge.inference.predictor import Predictor, bound_task
        from tuneforge.tasks import get_task

        self.run_dir = Path(run_dir)
        self.embedder = Embedder.of_run(self.run_dir, batch_size=batch_size)  # refuses ensembles and generators
        self.manifest = runs.read_manifest(self.run_dir)
        task = bound_task(get_task(self.manifest["task"]), self.manifest)
        self.predictor = Predictor(self.run_dir, self.manifest, task, self.embedder.model, self.embedder.tokenizer)
        self.batch_size = batch_size
        self.nbytes = self.embedder.nbytes
        #: reference features by (path, size, mtime, sample size): the service reports on one model many times
        self.reference_cache: dict[tuple[Any, ...], Any] = {}

    @property
    def labels(self) -> list[str]:
        return self.predictor.labels

    @property
    def tokenizer(self) -> Any:
        return self.embedder.tokenizer

    @property
    def task(self) -> Any:
        return self.predictor.task

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed(texts)

    def probabilities(self, examples: Sequence[dict[str, Any]]) -> np.ndarray | None:
        if not self.predictor.task.sequence_level:
            return None
        return self.predictor.predict_proba(examples, batch_size=self.batch_size)

    def examples(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """Raw inputs (as ``/v1/predict`` takes them) as the task's examples."""
        return self.predictor.to_examples(inputs)

    def close(self) -> None:  # the model cache's Entry interface
        self.reference_cache.clear()


@dataclass
class DriftReport:
    drift: bool
    score: float
    method: str
    threshold: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"drift": self.drift, "score": self.score, "method": self.method, "threshold": self.threshold,
                "details": self.details}


def example_text(example: Any) -> str:
    """The text of an input or example that the encoder reads: a string as it is; ``text`` (with ``text_pair``),
    a QA ``question`` and ``context``, or NER ``tokens`` joined by spaces."""
    if isinstance(example, str):
        return example
    if not isinstance(example, dict):
        return str(example)
    if isinstance(example.get("text"), str):
        pair = example.get("text_pair")
        return example["text"] + (" " + pair if isinstance(pair, str) and pair else "")
    if isinstance(example.get("question"), str):
        return example["question"] + " " + str(example.get("context") or "")
    if isinstance(example.get("tokens"), list):
        return " ".join(str(t) for t in example["tokens"])
    return json.dumps(example, ensure_ascii=False)


def reference_file(run_dir: Path) -> Path:
    """The training file a run's manifest names; a ConfigError saying to pass ``--reference`` when it is not
    there any more."""
    manifest = runs.read_manifest(run_dir)
    path = ((manifest.get("data") or {}).get("train") or {}).get("path")
    if not path:
        raise ConfigError(f"reference: the manifest of {run_dir} names no training file",
                          hint="give the training data with --reference FILE")
    if not Path(path).is_file():
        raise ConfigError(f"reference: the training file the run was trained on, {path}, is not there any more",
                          hint="give the training data (or a sample of it) with --reference FILE")
    return Path(path)


def model_threshold(run_dir: Path) -> float | None:
    """The threshold kept in the run folder's ``drift.json``, if any."""
    path = Path(run_dir) / THRESHOLDS_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("threshold")
    except (ValueError, AttributeError) as e:
        raise ConfigError(f"{path}: not a JSON object with a threshold ({e})",
                          hint='write {"threshold": 0.6} or delete the file') from e
    if not isinstance(value, int | float) or not 0.5 <= value <= 1.0:
        raise ConfigError(f"{path}: threshold must be a number from 0.5 to 1 (a ROC AUC), got {value!r}")
    return float(value)


def write_model_threshold(run_dir: Path, threshold: float) -> Path:
    """Keep ``threshold`` as the run's own drift threshold (``drift.json``, written then renamed)."""
    from tuneforge.utils.fs import atomic_write_text

    check_threshold(threshold)
    path = Path(run_dir) / THRESHOLDS_FILE
    atomic_write_text(path, json.dumps({"threshold": threshold, "method": METHOD}) + "\n")
    return path


def check_threshold(threshold: float) -> None:
    if not 0.5 <= threshold <= 1.0:
        raise ConfigError(f"threshold: a ROC AUC from 0.5 to 1, got {threshold}",
                          hint=f"{DEFAULT_THRESHOLD} flags a window a classifier tells from the training data "
                               "clearly better than chance")


def _sample(items: Sequence[Any], size: int, seed: int) -> list[Any]:
    if len(items) <= size:
        return list(items)
    rng = random.Random(seed)
    return [items[i] for i in sorted(rng.sample(range(len(items)), size))]


def _words(texts: Sequence[str]) -> list[str]:
    return [w.lower() for t in texts for w in _WORD.findall(t)]


def _unseen_rate(words: list[str], vocab: set[str]) -> float:
    return sum(1 for w in words if w not in vocab) / len(words) if words else 0.0


def _unk_rate(tokenizer: Any, texts: list[str]) -> float | None:
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return None
    ids = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=512)["input_ids"]
    total = sum(len(x) for x in ids)
    return sum(1 for x in ids for t in x if t == unk) / total if total else 0.0


def _check(name: str, value: float | None, threshold: float, drift: bool | None) -> dict[str, Any]:
    return {"name": name, "value": value, "threshold": threshold, "drift": drift}


@dataclass
class _Side:
    """The features of one side (reference or current)."""

    texts: list[str]
    vectors: np.ndarray
    probs: np.ndarray | None


def _features(model: DriftModel, examples: Sequence[dict[str, Any]]) -> _Side:
    texts = [example_text(e) for e in examples]
    return _Side(texts, model.embed(texts), model.probabilities(examples))


def drift_report(model: DriftModel, reference: Sequence[dict[str, Any]], current: Sequence[dict[str, Any]], *,
                 threshold: float = DEFAULT_THRESHOLD, reference_size: int = 1000, seed: int = 0,
                 permutations: int = 200, reference_key: tuple[Any, ...] | None = None,
                 cache: dict[tuple[Any, ...], Any] | None = None) -> DriftReport:
    """The drift of ``current`` (examples of the model's task, or raw inputs as dicts) against ``reference``
    (the training examples; sampled to ``reference_size`` with ``seed``). ``cache`` keeps the reference's
    features under ``reference_key`` between calls."""
    check_threshold(threshold)
    if len(current) < 10:
        raise ConfigError(f"data: {len(current)} inputs in the window; a drift report needs at least 10",
                          hint="log more inputs, or pass a larger window")
    if len(reference) < 10:
        raise ConfigError(f"reference: {len(reference)} examples; a drift report needs at least 10")
    key = (*reference_key, reference_size, seed) if reference_key is not None else None
    cached = cache.get(key) if cache is not None and key is not None else None
    if cached is None:
        all_texts = [example_text(e) for e in reference]
        order = list(range(len(all_texts)))
        random.Random(seed).shuffle(order)
        cut = max(1, int(len(order) * 0.8))  # vocabulary of 80% against the other 20%: the in-distribution rate
        seen = set(_words([all_texts[i] for i in order[:cut]]))
        baseline = _unseen_rate(_words([all_texts[i] for i in order[cut:]]), seen)
        cached = (_features(model, _sample(reference, reference_size, seed)), set(_words(all_texts)), baseline)
        if cache is not None and key is not None:
            cache[key] = cached
    ref, vocab, unseen_baseline = cached
    cur = _features(model, current)

    auc = domain_classifier_auc(ref.vectors, cur.vectors, seed=seed)
    mmd = mmd_rbf(ref.vectors, cur.vectors, permutations=permutations, seed=seed)
    checks = [_check("domain_classifier_auc", auc, threshold, auc > threshold),
              _check("mmd_p_value", mmd.p_value, MMD_P, mmd.p_value < MMD_P)]
    details: dict[str, Any] = {
        "embedding": {"domain_classifier_auc": auc, "mmd": mmd.value, "mmd_p_value": mmd.p_value,
                      "mmd_bandwidth": mmd.bandwidth, "mmd_permutations": mmd.permutations},
        "sizes": {"reference": len(ref.texts), "reference_total": len(reference), "current": len(cur.texts)},
    }
    if ref.probs is not None and cur.probs is not None and model.labels:
        labels = model.labels
        ref_pred = [labels[i] for i in ref.probs.argmax(axis=1)]
        cur_pred = [labels[i] for i in cur.probs.argmax(axis=1)]
        ref_sh, cur_sh = shares(ref_pred, labels), shares(cur_pred, labels)
        p = psi(ref_sh, cur_sh)
        chi = chi_square_p(ref_sh, cur_sh * len(cur_pred))
        ref_conf, cur_conf = float(ref.probs.max(axis=1).mean()), float(cur.probs.max(axis=1).mean())
        details["predictions"] = {
            "reference_shares": dict(zip(labels, ref_sh.round(4).tolist(), strict=True)),
            "current_shares": dict(zip(labels, cur_sh.round(4).tolist(), strict=True)),
            "psi": p, "chi_square_p_value": chi, "reference_mean_confidence": ref_conf,
            "current_mean_confidence": cur_conf, "confidence_drop": ref_conf - cur_conf}
        checks += [_check("label_psi", p, PSI_THRESHOLD, p >= PSI_THRESHOLD),
                   _check("label_chi_square_p_value", chi, CHI_SQUARE_P, chi < CHI_SQUARE_P),
                   _check("confidence_drop", ref_conf - cur_conf, CONFIDENCE_DROP,
                          ref_conf - cur_conf > CONFIDENCE_DROP)]
    ref_unk, cur_unk = _unk_rate(model.tokenizer, ref.texts), _unk_rate(model.tokenizer, cur.texts)
    unseen = _unseen_rate(_words(cur.texts), vocab)
    details["vocabulary"] = {"reference_unk_token_rate": ref_unk, "current_unk_token_rate": cur_unk,
                             "unseen_word_rate": unseen, "unseen_word_rate_baseline": unseen_baseline}
    if ref_unk is not None and cur_unk is not None:
        checks.append(_check("unk_token_rate_rise", cur_unk - ref_unk, UNK_RISE, cur_unk - ref_unk > UNK_RISE))
    checks.append(_check("unseen_word_rate_rise", unseen - unseen_baseline, UNSEEN_WORD_RISE,
                         unseen - unseen_baseline > UNSEEN_WORD_RISE))
    details["checks"] = checks
    return DriftReport(auc > threshold, auc, METHOD, threshold, details)
