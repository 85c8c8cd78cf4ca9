"""The typed training configuration: the same fields from CLI options or from a YAML file.

Every problem in a configuration is collected and reported at once, naming the field and what is allowed.
``None`` on a tuning knob means "auto": TuneForge picks a value that works for the model and data size, and
records the value it picked in the run's ``tuneforge.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuneforge.errors import ConfigError

__all__ = ["Columns", "TrainConfig", "load_config_file", "make_config"]

TaskName = Literal["classification", "ner", "qa"]


class Columns(BaseModel):
    """Which column of the data file holds what (default: auto-detected from common names)."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, description="Column with the input text (classification).")
    text_pair: str | None = Field(None, description="Column with the second text of a sentence pair.")
    label: str | None = Field(None, description="Column with the label (or a list of labels for multi-label).")
    tokens: str | None = Field(None, description="Column with the list of tokens (NER).")
    tags: str | None = Field(None, description="Column with the list of BIO tags (NER).")
    question: str | None = Field(None, description="Column with the question (QA).")
    context: str | None = Field(None, description="Column with the context passage (QA).")
    answers: str | None = Field(None, description="Column with the answers (QA).")


class TrainConfig(BaseModel):
    """Everything that defines a fine-tuning run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    task: TaskName = Field(description="What the model learns: classification, ner or qa.")
    data: Path = Field(description="Training data file (CSV, TSV, JSONL, JSON/SQuAD, CoNLL).")
    eval_data: Path | None = Field(None, description="Dev data for early stopping and the evaluation report.")
    output: Path = Field(description="Folder the trained model is written to.")
    base_model: str = Field("minilm", description="A name from `tuneforge models` or a local Hugging Face folder.")
    method: str = Field("full", description="How the model is made trainable (full fine-tuning by default).")
    columns: Columns = Field(default_factory=Columns)
    multi_label: bool | None = Field(None, description="Several labels per example (auto: when labels are lists).")
    label_separator: str | None = Field(None, description="Separator of labels in one CSV cell for multi-label.")
    lenient_bio: bool = Field(False, description="NER: read a stray I-X (no B-X before it) as the start of an "
                                                 "entity instead of refusing the file.")

    epochs: float = Field(3.0, gt=0, le=1000, description="Passes over the training data.")
    learning_rate: float | None = Field(None, gt=0, lt=1,
                                        description="Peak learning rate (auto: by model and data size).")
    batch_size: int | None = Field(None, ge=1, le=4096,
                                   description="Examples per step (auto: by model and data size).")
    grad_accum: int = Field(1, ge=1, le=1024, description="Steps whose gradients are summed before an update.")
    max_length: int | None = Field(None, ge=16, le=8192, description="Tokens per input (auto: by task).")
    stride: int = Field(128, ge=0, description="Overlap between windows of a long QA context, in tokens.")
    head_lr_multiplier: float = Field(
        10.0, gt=0, le=1000, description="Learning rate of the new task head (and pooler) relative to the encoder's.")
    warm_start_head: bool = Field(
        False, description="Fit the classification head on frozen encoder features before fine-tuning (LP-FT).")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps with a linear learning-rate warmup.")
    weight_decay: float = Field(0.01, ge=0, lt=1, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold.")
    lr_scheduler: Literal["linear", "cosine", "constant"] = Field("linear", description="Decay after warmup.")
    seed: int = Field(42, description="Seed for initialisation, shuffling and dropout.")
    early_stopping_patience: int | None = Field(
        3, ge=1, description="Stop after this many evaluations without improvement (needs eval data; none: off).")
    eval_every: int | None = Field(None, ge=1, description="Evaluate every N steps (default: once per epoch).")
    freeze_embeddings: bool = Field(
        True, description="Keep the word-embedding matrix fixed: much faster (half of a small model's weights, "
                          "most of a multilingual one's) and no worse in accuracy on typical task data.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast where the CPU/GPU supports it (auto), or plain fp32.")
    dropout: float | None = Field(None, ge=0, lt=1, description="Dropout inside the encoder (default: the model's).")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing for classification.")
    logging_steps: int = Field(25, ge=1, description="Log the loss every N steps (TensorBoard and console).")
    keep_checkpoints: bool = Field(False, description="Keep the intermediate checkpoints after a successful run.")
    eval_batch_size: int = Field(64, ge=1, description="Batch size for evaluation.")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        problems: list[str] = []
        if self.method != "full":
            problems.append(f"method: '{self.method}' is not available yet (available: full)")
        if self.eval_data is None and self.early_stopping_patience is not None:
            self.early_stopping_patience = None  # nothing to stop on; not an error
        if self.max_length is not None and self.task == "qa" and self.stride >= self.max_length // 2:
            problems.append(f"stride: {self.stride} must be below half of max_length ({self.max_length})")
        if self.multi_label and self.task != "classification":
            problems.append(f"multi_label: only classification can be multi-label, not {self.task}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _format_validation(e: ValidationError, source: str) -> ConfigError:
    problems = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "config"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown option (allowed: {', '.join(sorted(TrainConfig.model_fields))})"
        elif err["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be")
        elif msg.startswith("Value error, "):
            for part in msg[len("Value error, "):].split("; "):
                problems.append(part)
            continue
        problems.append(f"{loc}: {msg}")
    return ConfigError(problems, hint=f"Fix the fields above in {source}.")


def make_config(values: dict[str, Any], source: str = "the options") -> TrainConfig:
    """Build a validated config; every problem is reported in one ConfigError."""
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as e:
        raise _format_validation(e, source) from None


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML (or JSON) run config into a dict of fields (relative paths are relative to the working folder)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config: {path} does not exist") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config: {path} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {path} must hold a mapping of options (got {type(raw).__name__})")
    return {k.replace("-", "_"): v for k, v in raw.items()}
