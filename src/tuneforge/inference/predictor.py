"""Load a trained run folder and predict: the one path shared by the CLI, the evaluation and the API.

A run folder is loaded by its manifest's ``method``: a folder that is one model goes through the tuning
method's loader (:func:`tuneforge.methods.get_method`); a folder that composes several models (an ensemble)
goes through a run loader registered for its kind with :func:`register_run_loader`. A base model of a generative
task (a chat model such as smollm2) also predicts as it is, zero-shot: :func:`load_base_predictor`.

A run's task is the task bound to the run (``task.for_run(manifest)`` where the task has it): a classifier fitted
with a calibration and a reject option decodes with them, so every prediction path (CLI, evaluation, API, the
solutions) returns calibrated scores and the out-of-scope label for a rejected input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge import runs
from tuneforge.errors import ConfigError, DataError, DataProblem
from tuneforge.settings import Settings
from tuneforge.tasks import Task, get_task
from tuneforge.tasks.common import softmax
from tuneforge.tasks.encoder import forward_features
from tuneforge.utils.hf import max_positions, quiet_transformers

__all__ = ["Predictor", "RunLoader", "bound_task", "load_base_predictor", "load_predictor", "register_run_loader",
           "run_loader_kinds"]

#: ``loader(run_dir, manifest, bf16=...)``: an object with the :class:`Predictor` interface
RunLoader = Callable[..., Any]

_RUN_LOADERS: dict[str, RunLoader] = {}


def register_run_loader(kind: str, loader: RunLoader) -> None:
    """Load run folders whose manifest says ``method: <kind>`` with ``loader`` instead of a tuning method's
    loader: for folders that are a composition of several models served as one (an ensemble)."""
    _RUN_LOADERS[kind] = loader


def run_loader_kinds() -> list[str]:
    return sorted(_RUN_LOADERS)


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
        """Turn raw inputs into task examples (the task parses each: a string is a text for classification and
        NER; QA needs ``{"question", "context"}``; a sentence pair is ``{"text", "text_pair"}``); every bad input
        is reported at once in a :class:`DataError`."""
        problems: list[DataProblem] = []
        examples: list[dict[str, Any]] = []
        for i, item in enumerate(inputs):
            parsed = self.task.parse_input(item, i)
            if isinstance(parsed, DataProblem):
                problems.append(parsed)
            else:
                examples.append(parsed)
        if problems:
            raise DataError(problems)
        return examples

    def predict_examples(self, examples: Sequence[dict[str, Any]], *, batch_size: int = 64,
                         on_batch: Callable[[int], None] | None = None, **options: Any) -> list[dict[str, Any]]:
        """One prediction per example, as the task decodes it (scored by the evaluation as it is); ``options``
        go to the task's ``predict`` (a generative task's ``max_new_tokens``)."""
        # NER sentences with no words (only spaces) produce no first-subword positions; decode handles that.
        return self.task.predict(self.model, self.tokenizer, examples, self.labels,
                                 max_length=int(self.manifest["max_length"]),
                                 stride=int(self.manifest.get("stride", 128)), multi_label=self.multi_label,
                                 batch_size=batch_size, bf16=self.bf16, on_batch=on_batch, **options)

    def forward(self, features: Sequence[dict[str, Any]], *, batch_size: int = 64,
                on_batch: Callable[[int], None] | None = None) -> list[tuple[np.ndarray, ...]]:
        """Encoder tasks: the model's raw outputs (logits) per encoded feature, in input order, what the task
        decodes; another backend's predictor (ONNX Runtime) replaces only this."""
        return forward_features(self.model, features, self.task.collator(self.tokenizer), batch_size=batch_size,
                                bf16=self.bf16, on_batch=on_batch)

    def predict_proba(self, examples: Sequence[dict[str, Any]], *, batch_size: int = 64) -> np.ndarray:
        """Sequence-level tasks (classification): the probability of every label (columns in ``labels`` order),
        one row per example."""
        if not self.task.sequence_level:
            raise ConfigError(f"probabilities are defined for classification models, not {self.task.name}")
        enc = self.task.encode(examples, self.tokenizer, self.labels, max_length=int(self.manifest["max_length"]),
                               with_labels=False, multi_label=self.multi_label)
        outputs = self.forward(enc.features, batch_size=batch_size)
        logits = np.stack([o[0] for o in outputs]).astype(np.float64)
        probabilities = getattr(self.task, "probabilities", None)
        if probabilities is not None:  # the task's own, at the run's calibrated temperature
            return np.asarray(probabilities(logits, multi_label=self.multi_label))
        if self.multi_label:
            return 1.0 / (1.0 + np.exp(-logits))
        return softmax(logits, axis=-1)

    def predict(self, inputs: Sequence[str | dict[str, Any]], *, batch_size: int = 64,
                **options: Any) -> list[dict[str, Any]]:
        """Predictions for raw inputs, as users see them (the task drops what only decoding needed)."""
        preds = self.predict_examples(self.to_examples(inputs), batch_size=batch_size, **options)
        return [self.task.public_prediction(p) for p in preds]


def load_predictor(run_dir: str | Path, *, bf16: bool = False, settings: Settings | None = None) -> Any:
    """Load a finished run folder (weights from safetensors only) through its method's loader; an ensemble
    folder loads as an :class:`~tuneforge.inference.ensemble.EnsemblePredictor` with the same interface."""
    from transformers import AutoTokenizer

    from tuneforge.methods import get_method

    run_dir = Path(run_dir)
    manifest = runs.read_manifest(run_dir)
    kind = manifest.get("method", "full")
    if kind in _RUN_LOADERS:
        return _RUN_LOADERS[kind](run_dir, manifest, bf16=bf16)
    task = bound_task(get_task(manifest["task"]), manifest)
    quiet_transformers()
    method = get_method(kind)
    base = None if kind == "full" else runs.base_model_path(manifest, settings.cache_dir if settings else None)
    model = method.load(run_dir, manifest, base, task)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir))
    return Predictor(run_dir, manifest, task, model, tokenizer, bf16=bf16)


def bound_task(task: Task, manifest: dict[str, Any]) -> Task:
    """``task`` as the run of ``manifest`` uses it (its fitted calibration and reject option), where the task
    binds to runs; the task itself otherwise."""
    for_run = getattr(task, "for_run", None)
    return for_run(manifest) if for_run is not None else task


def load_base_predictor(name_or_path: str | Path, task: str | Task, *, bf16: bool = False,
                        settings: Settings | None = None) -> Predictor:
    """A base model as it is (no fine-tuning) ready to predict for a generative ``task``: a registered name
    (``smollm2``) or a local causal-LM folder (a finished full fine-tuning run folder too). The model is loaded by
    the task (its ``build_model``: safetensors only, in eval mode) with the folder's tokenizer and chat template;
    ``max_length`` is the task's default, capped by the model's context. ``manifest`` describes it like a run's
    (``method`` "base", no labels) so evaluation, ``chat`` and serving use it as they use a run.

    Raises:
        ConfigError: ``task`` is not generative (an encoder predicts only through a trained head), or the base
            model is of another kind (an encoder for a generative task).
        ModelNotFoundError: an unknown name, a package not installed, a folder without a model.
    """
    from transformers import AutoTokenizer

    spec = get_task(task) if isinstance(task, str) else task
    if not spec.generative:
        raise ConfigError(f"task: a base model predicts as it is only for generative tasks; a {spec.name} model "
                          "needs the head a training run gives it",
                          hint=f"train one with `tuneforge train --task {spec.name} ...` and use its folder")
    settings = settings or Settings()
    base = runs.resolve_base_model(str(name_or_path), settings.cache_dir)
    if base.spec is not None and base.spec.kind != spec.auto_model_kind:
        raise ConfigError(f"base_model: {base.name} is an {base.spec.kind} model; the {spec.name} task needs a "
                          f"{spec.auto_model_kind} model",
                          hint="see the kind column of `tuneforge models`")
    quiet_transformers()
    model = spec.build_model(base.path, [], multi_label=False)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(base.path))
    manifest: dict[str, Any] = {
        "name": base.name, "task": spec.name, "labels": [], "multi_label": False, "method": "base",
        "max_length": min(spec.default_max_length, max_positions(base.path, tokenizer)), "stride": 128,
        "base_model": {"name": base.name, "path": str(base.path),
                       "model_id": base.spec.model_id if base.spec is not None else None},
        "chat_template": getattr(tokenizer, "chat_template", None),
    }
    return Predictor(base.path, manifest, spec, model, tokenizer, bf16=bf16)
