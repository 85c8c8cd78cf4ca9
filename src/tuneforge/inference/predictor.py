"""Load a trained run folder and predict: the one path shared by the CLI, the evaluation and (later) the API."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError, DataProblem, RunError
from tuneforge.inference.runner import forward_features
from tuneforge.tasks import Task, get_task
from tuneforge.tasks.common import split_words
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

    def predict(self, inputs: Sequence[str | dict[str, Any]], *, batch_size: int = 64) -> list[dict[str, Any]]:
        preds = self.predict_examples(self.to_examples(inputs), batch_size=batch_size)
        if self.task.name == "ner":
            for p in preds:
                p.pop("tags", None)
                for e in p["entities"]:
                    e.pop("words", None)
        return preds


def load_predictor(run_dir: str | Path, *, bf16: bool = False) -> Predictor:
    """Load a finished run folder (weights from safetensors only)."""
    import transformers
    from transformers import AutoTokenizer

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    task = get_task(manifest["task"])
    auto = {"classification": transformers.AutoModelForSequenceClassification,
            "ner": transformers.AutoModelForTokenClassification,
            "qa": transformers.AutoModelForQuestionAnswering}[task.name]
    quiet_transformers()
    model = auto.from_pretrained(str(run_dir), use_safetensors=True, trust_remote_code=False)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir))
    return Predictor(run_dir, manifest, task, model, tokenizer, bf16=bf16)
