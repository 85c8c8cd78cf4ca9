"""Load a trained run folder and predict: the one path shared by the CLI, the evaluation and (later) the API."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError, DataError, DataProblem, RunError
from tuneforge.tasks.encoder import forward_features
from tuneforge.settings import Settings
from tuneforge.tasks import Task, get_task
from tuneforge.tasks.common import softmax, split_words
from tuneforge.utils.hf import quiet_transformers

__all__ = ["Predictor", "load_predictor", "read_manifest"]

MANIFEST = "tuneforge.json"


def read_manifest(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a folder.", hint="Pass the --output folder of a `tuneforge train` run.")
    path = run_dir / MANIFEST
    if not path.exists():
        interrupted = (run_dir / "run-config.json").exists()
        raise RunError(f"{run_dir} holds no finished TuneForge model (no {MANIFEST}).",
                       hint=f"Finish it with: tuneforge train --resume --output {run_dir}" if interrupted else
                       "Pass the --output folder of a finished `tuneforge train` run.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunError(f"{path} is corrupt: {e}") from None
    if not any(run_dir.glob("*.safetensors")):
        raise RunError(f"{run_dir} has no .safetensors weights.")
    return manifest


@dataclass
class Predictor:
    """A fine-tuned model ready to predict."""

    run_dir: Path
    manifest: dict[str, Any]
    task: Task
    model: Any
    tokenizer: Any
    bf16: bool = False

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def multi_label(self) -> bool:
        return bool(self.manifest.get("multi_label"))

    def to_examples(self, inputs: Sequence[str | dict[str, Any]]) -> list[dict[str, Any]]:
        """Turn raw inputs into task examples: a string is a text (classification, NER); QA needs
        ``{"question", "context"}``; a sentence pair is ``{"text", "text_pair"}``."""
        problems: list[DataProblem] = []
        examples: list[dict[str, Any]] = []
        for i, item in enumerate(inputs):
            where = f"input {i + 1}"
            if self.task.name == "qa":
                if not isinstance(item, dict) or not item.get("question") or not item.get("context"):
                    problems.append(DataProblem(where, None, "question/context",
                                                "a QA input needs a question and a context",
                                                'pass {"question": ..., "context": ...}'))
                    continue
                examples.append({"id": str(item.get("id", i)), "question": str(item["question"]),
                                 "context": str(item["context"]), "answers": {"text": [], "answer_start": []}})
                continue
            text = item if isinstance(item, str) else item.get("text") if isinstance(item, dict) else None
            if not isinstance(text, str) or not text.strip():
                problems.append(DataProblem(where, None, "text", "empty or missing text", "pass a non-empty string"))
                continue
            if self.task.name == "ner":
                words = split_words(text)
                examples.append({"tokens": [w for w, _, _ in words], "tags": None,
                                 "spans": [(s, e) for _, s, e in words], "source_text": text})
            else:
                pair = item.get("text_pair") if isinstance(item, dict) else None
                examples.append({"text": text, "text_pair": pair, "label": None})
        if problems:
            raise DataError(problems)
        return examples

    def predict_examples(self, examples: Sequence[dict[str, Any]], *, batch_size: int = 64,
                         on_batch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        if not examples:
            return []
        enc = self.task.encode(examples, self.tokenizer, self.labels, max_length=int(self.manifest["max_length"]),
                               stride=int(self.manifest.get("stride", 128)), with_labels=False,
                               multi_label=self.multi_label)
        # NER sentences with no words (only spaces) produce no first-subword positions; decode handles that.
        outputs = forward_features(self.model, enc.features, self.task.collator(self.tokenizer),
                                   batch_size=batch_size, bf16=self.bf16, on_batch=on_batch)
        return self.task.decode(outputs, enc, examples, self.labels, multi_label=self.multi_label)

    def predict_proba(self, examples: Sequence[dict[str, Any]], *, batch_size: int = 64) -> np.ndarray:
        """Classification: the probability of every label (columns in ``labels`` order), one row per example."""
        if self.task.name != "classification":
            raise ConfigError(f"probabilities are defined for classification models, not {self.task.name}")
        enc = self.task.encode(examples, self.tokenizer, self.labels, max_length=int(self.manifest["max_length"]),
                               with_labels=False, multi_label=self.multi_label)
        outputs = forward_features(self.model, enc.features, self.task.collator(self.tokenizer),
                                   batch_size=batch_size, bf16=self.bf16)
        logits = np.stack([o[0] for o in outputs]).astype(np.float64)
        if self.multi_label:
            return 1.0 / (1.0 + np.exp(-logits))
        return softmax(logits, axis=-1)

    def predict(self, inputs: Sequence[str | dict[str, Any]], *, batch_size: int = 64) -> list[dict[str, Any]]:
        preds = self.predict_examples(self.to_examples(inputs), batch_size=batch_size)
        if self.task.name == "ner":
            for p in preds:
                p.pop("tags", None)
                for e in p["entities"]:
                    e.pop("words", None)
        return preds


def base_model_path(manifest: dict[str, Any], settings: Settings | None = None) -> Path | None:
    """The base model a run was trained from, for methods that save only their own weights (adapters): by its
    registered name when it has one (the installed package), else the folder recorded at training time."""
    from tuneforge.models.registry import BASE_MODELS, resolve_base_model

    base = manifest.get("base_model") or {}
    name = base.get("name")
    if name in BASE_MODELS:
        return resolve_base_model(name, (settings or Settings()).cache_dir).path
    path = base.get("path") or base.get("model_id")
    return Path(path) if path and Path(path).is_dir() else None


def load_predictor(run_dir: str | Path, *, bf16: bool = False, settings: Settings | None = None) -> Any:
    """Load a finished run folder (weights from safetensors only) through its method's loader; an ensemble
    folder loads as an :class:`~tuneforge.inference.ensemble.EnsemblePredictor` with the same interface."""
    from transformers import AutoTokenizer

    from tuneforge.methods import get_method

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    kind = manifest.get("method", "full")
    if kind in _PREDICTOR_LOADERS:
        return _PREDICTOR_LOADERS[kind](run_dir, manifest, bf16=bf16)
    task = get_task(manifest["task"])
    quiet_transformers()
    method = get_method(kind)
    base = None if kind == "full" else base_model_path(manifest, settings)
    model = method.load(run_dir, manifest, base)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir))
    return Predictor(run_dir, manifest, task, model, tokenizer, bf16=bf16)


def _load_ensemble(run_dir: Path, manifest: dict[str, Any], *, bf16: bool) -> Any:
    from tuneforge.inference.ensemble import load_ensemble

    return load_ensemble(run_dir, manifest, bf16=bf16)


# run folders that are not one model but a composition of several (served as one)
_PREDICTOR_LOADERS: dict[str, Callable[..., Any]] = {"ensemble": _load_ensemble}
