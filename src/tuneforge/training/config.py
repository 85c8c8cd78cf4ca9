"""The typed training configuration: the same fields from CLI options or from a YAML file.

Every problem in a configuration is collected and reported at once, naming the field and what is allowed.
``None`` on a tuning knob means "auto": TuneForge picks a value that works for the model and data size, and
records the value it picked in the run's ``tuneforge.json``.

The fields are flat (``lora_r: 8`` in YAML, ``--lora-r 8`` on the command line): :class:`TrainConfig` is the run's
own fields (:class:`CoreConfig`), every method's options (each method's ``config.py``, gathered in
:class:`~tuneforge.methods.AllMethodOptions`) and the training options that compose with any Trainer method
(:class:`TrainingOptions`). A method reads its own options as one object: ``get_method(name).options(config)``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuneforge.errors import ConfigError
from tuneforge.methods import AllMethodOptions, get_method, method_names
from tuneforge.tasks import get_task, task_names

__all__ = ["Columns", "ConfidenceOptions", "CoreConfig", "ExecutorOptions", "PrivacyOptions", "TrainConfig",
           "TrainingOptions", "load_config_file", "make_config"]


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


class CoreConfig(BaseModel):
    """The run: what it learns from which data, on which base model with which method, and the loop's knobs."""

    task: str = Field(description="What the model learns: classification, ner or qa.")
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
    strict: bool = Field(False, description="QA: refuse answers whose answer_start does not point at their text "
                                            "(default: repair offsets that are a little off, e.g. counted in UTF-16 "
                                            "units, and drop answers that cannot be located, with a report).")
    delimiter: str | None = Field(None, description="CSV/TSV field separator of the data files: one character, or "
                                                    "tab, comma, semicolon, pipe (default: detected).")
    encoding: str | None = Field(None, description="Text encoding of the data files, e.g. big5, shift_jis, gbk, "
                                                   "cp1252 (default: UTF-8, or detected with a warning).")

    epochs: float | Literal["auto"] = Field(
        3.0, description="Passes over the training data, or auto: OpenAI's rule (3, raised or lowered so that "
                         "examples x epochs is 100 to 25,000), resolved when the data is read and recorded in the "
                         "manifest.")
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

    @field_validator("epochs", mode="before")
    @classmethod
    def _epochs_or_auto(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() == "auto":
            return "auto"
        try:
            number = float(v) if not isinstance(v, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or not 0 < number <= 1000:
            raise ValueError(f"epochs: must be auto or a number of passes above 0 and at most 1000, not {v!r}")
        return number

    @field_validator("task")
    @classmethod
    def _registered_task(cls, v: str) -> str:
        if v not in task_names():
            raise ValueError(f"task: '{v}' is not a task (choose one of: {', '.join(task_names())})")
        return v


class TrainingOptions(BaseModel):
    """Training options that compose with any method trained by the Trainer loop (and unlabelled data)."""

    unlabeled_data: Path | None = Field(
        None, description="Unlabelled text (a .txt with one text per line, or a data file's text column): "
                          "setfit self-trains on it; distillation adds it to the transfer set.")
    adversarial: Literal["none", "fgm", "pgd"] = Field(
        "none", description="Adversarial training on the word embeddings: fgm (one step) or pgd (several).")
    adversarial_epsilon: float = Field(0.1, gt=0, description=(
        "fgm/pgd: norm of the perturbation of one example's embedding outputs (all its tokens together; a minilm "
        "token embedding has norm ~1). 1.0 keeps minilm from learning at all on SST-2."))
    pgd_steps: int = Field(3, ge=1, le=20, description="pgd: ascent steps per batch.")
    distill_from: Path | None = Field(None, description="A trained run (or ensemble) whose predicted "
                                                        "probabilities the model learns from (classification).")
    distill_alpha: float = Field(0.5, ge=0, le=1, description="distillation: weight of the true labels' loss "
                                                              "(the rest is the teacher's soft targets).")
    distill_temperature: float = Field(2.0, gt=0, le=20, description="distillation: softmax temperature.")
    augment: Literal["none", "eda"] = Field("none", description="Training-data augmentation: eda (synonym "
                                                                "replacement, insertion, swap, deletion).")
    augment_copies: int = Field(2, ge=1, le=16, description="eda: augmented copies per training example.")
    augment_rate: float = Field(0.1, gt=0, le=0.5, description="eda: share of words changed per operation.")
    layer_lr_decay: float | None = Field(
        None, gt=0, le=1, description="Layer-wise learning-rate decay: layer i of L learns at lr * decay^(L-i).")
    freeze_layers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="Freeze the embeddings and this many lower encoder layers. auto: the lower third in "
                            "short full fine-tuning runs (at most 10,000 training examples seen, epochs x "
                            "examples) whose embeddings are frozen; none otherwise.")
    packing: bool = Field(False, description="Generation: padding-free batches (the batch's conversations "
                                             "concatenated, positions restarting per conversation).")
    mask_pii: bool = Field(False, description="Mask personal data in the training and dev texts before training "
                                              "(e-mails, phone numbers, credit cards, IBANs, IPs, Chinese ID "
                                              "numbers, as `tuneforge data clean --mask-pii` does); the counts "
                                              "per type are recorded in the manifest.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass instead of "
                                                            "keeping them: less memory for long sequences or a larger "
                                                            "model, about a third more compute.")

    @field_validator("freeze_layers", mode="before")
    @classmethod
    def _layers_or_auto(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return v
        if isinstance(v, str) and v.strip().isdigit():
            return int(v)
        raise ValueError(f"freeze_layers: must be auto or a number of layers (0 or more), not {v!r}")


class ConfidenceOptions(BaseModel):
    """Knowing when not to answer (single-label classification): an out-of-scope label, a reject option and
    calibration, fitted on the dev set after training (docs/out-of-scope.md)."""

    oos_label: str | None = Field(
        None, min_length=1, description="The label of out-of-scope examples, e.g. oos: trained as a class where the "
                                        "training data has examples of it, allowed in dev and test data where it "
                                        "has none; kept out of the calibration of the known classes, and the label "
                                        "a rejected input gets.")
    reject: Literal["auto", "msp", "energy", "none"] = Field(
        "none", description="Reject inputs unlike the known classes by a threshold fitted on the dev set: on the "
                            "maximum softmax probability (msp) or the energy score; auto: the one with the higher "
                            "out-of-scope F1 on dev; none: always answer (needs --oos-label).")
    reject_target: float = Field(
        0.95, gt=0, le=1, description="Share of the correctly labelled in-scope dev examples the threshold must keep "
                                      "answering; with out-of-scope dev examples it maximises their F1 within that.")
    calibrate: bool = Field(False, description="Fit temperature scaling on the dev set's in-scope examples, so "
                                               "that scores are calibrated probabilities.")

    def wants_confidence(self) -> bool:
        """Whether the run fits (or records) a calibration or reject policy after training."""
        return self.oos_label is not None or self.reject != "none" or self.calibrate


class PrivacyOptions(BaseModel):
    """Differentially private training (DP-SGD through Opacus; docs/responsible-ai.md)."""

    dp_epsilon: float | None = Field(
        None, gt=0, le=1000, description="Train with differential privacy (DP-SGD: per-example clipping, noise, "
                                         "Poisson sampling) spending at most this privacy budget ε; the spent ε is "
                                         "recorded in tuneforge.json (default: not private).")
    dp_delta: float | None = Field(None, gt=0, lt=1, description="DP: the δ of the (ε, δ) guarantee (default: "
                                                                 "1/(10 n) for n training examples).")
    dp_max_grad_norm: float = Field(1.0, gt=0, description="DP: each example's gradient is clipped to this norm.")
    dp_accountant: Literal["prv", "rdp"] = Field(
        "prv", description="DP: Opacus' privacy accountant, prv (Gopi et al. 2021: tighter, Opacus' default) or rdp "
                           "(Renyi DP).")


class ExecutorOptions(BaseModel):
    """Where the run trains: this process, or data-parallel on a Ray cluster (docs/ray.md)."""

    executor: Literal["local", "ray"] = Field(
        "local", description="local: this process; ray: data-parallel on a Ray cluster with Ray Train (RAY_ADDRESS, "
                             "else a Ray started on this machine), the same recipe in each worker.")
    workers: int = Field(1, ge=1, le=1024, description="ray: training workers (one process each, gradients "
                                                       "all-reduced every step).")
    use_gpu: bool = Field(False, description="ray: one GPU per worker (nccl); CPU workers all-reduce with gloo.")
    max_failures: int = Field(2, ge=0, le=100, description="ray: worker failures survived: a killed worker is "
                                                           "replaced and training resumes from the last checkpoint.")
    ray_storage: str | None = Field(
        None, description="ray: where Ray Train keeps checkpoints, a folder every node sees or s3://bucket/prefix "
                          "(default: OUTPUT/ray).")


def _executor_problems(c: TrainConfig) -> list[str]:
    """Ray options on a local run, and what a Ray run cannot train (it runs the Trainer loop in each worker)."""
    if c.executor == "local":
        return [f"{name}: applies with --executor ray" for name in ("workers", "use_gpu", "max_failures", "ray_storage")
                if getattr(c, name) != type(c).model_fields[name].default]
    problems = []
    if c.method in method_names() and get_method(c.method).own_loop:
        problems.append(f"executor: method {c.method} trains outside the Trainer loop; --executor ray trains methods "
                        "that use it (full, lora, adapter ...)")
    if c.dp_epsilon is not None:
        problems.append("executor: differentially private training runs in one process (leave out --executor ray)")
    return problems


#: the methods whose trainable weights Opacus computes per-example gradients for: plain layers (all of the
#: unfrozen encoder, LoRA's two small matrices, bottleneck adapters) and the task head. AdaLoRA reallocates ranks
#: from the gradients between steps, IA3 and prompt methods train custom parameters outside such layers, SetFit
#: and zero-shot train (or build) their model outside the loop, DPO trains a chat model on pairs.
PRIVATE_METHODS = ("full", "lora", "adapter")

#: options that cannot be combined with DP training, with why
_DP_CONFLICTS: dict[str, tuple[Any, str]] = {
    "augment": ("none", "augmented copies of an example would each count as another example"),
    "distill_from": (None, "the teacher's soft targets come from a non-private pass over the data"),
    "warm_start_head": (False, "the head would be fitted on the data without privacy first"),
    "adversarial": ("none", "its extra backward passes mix into the per-example gradients"),
    "gradient_checkpointing": (False, "Opacus' per-example gradient hooks need the activations kept"),
    "grad_accum": (1, "Poisson-sampled batches are not accumulated: give a larger --batch-size instead"),
    "keep_checkpoints": (False, "a private run keeps no intermediate checkpoints"),
}


def private_task(task: Any) -> bool:
    """Whether DP-SGD can train ``task``: one prediction per sequence or per token of an unsplit input (a
    windowed task turns one example into several features; a generative one trains a chat model)."""
    return not task.generative and not task.windowed


def _privacy_problems(c: TrainConfig) -> list[str]:
    """Problems of a run configuration's DP options (empty when fine), each naming the field."""
    fields = type(c).model_fields
    given = [name for name in ("dp_delta", "dp_max_grad_norm", "dp_accountant")
             if getattr(c, name) != fields[name].default]
    if c.dp_epsilon is None:
        return [f"{name}: applies to differentially private training (give --dp-epsilon)" for name in given]
    problems: list[str] = []
    if c.method in method_names() and c.method not in PRIVATE_METHODS:
        why = "it trains outside the training loop" if get_method(c.method).own_loop else \
            "Opacus computes no per-example gradients for its parameters"
        problems.append(f"dp_epsilon: method {c.method} cannot be trained with differential privacy ({why}); "
                        f"use --method {' or '.join(PRIVATE_METHODS)}")
    if c.task in task_names() and not private_task(get_task(c.task)):
        supported = [t for t in task_names() if private_task(get_task(t))]
        problems.append(f"dp_epsilon: differentially private training supports {', '.join(supported)}, "
                        f"not {c.task}")
    for name, (default, why) in _DP_CONFLICTS.items():
        if getattr(c, name) != default:
            problems.append(f"{name}: cannot be combined with --dp-epsilon ({why})")
    if not c.freeze_embeddings and "freeze_embeddings" in c.model_fields_set:
        problems.append("freeze_embeddings: a differentially private run keeps the embeddings frozen, as Opacus "
                        "requires for transformers (leave out --train-embeddings)")
    if c.precision == "bf16":
        problems.append("precision: a differentially private run trains in fp32 (leave out --precision bf16)")
    return problems


class TrainConfig(ExecutorOptions, PrivacyOptions, ConfidenceOptions, TrainingOptions, AllMethodOptions, CoreConfig):
    """Everything that defines a fine-tuning run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    @model_validator(mode="before")
    @classmethod
    def _task_default_method(cls, data: Any) -> Any:
        """No method named: the task's ``default_method`` where it has one (generation: lora), else full."""
        if isinstance(data, dict) and data.get("method") is None and isinstance(data.get("task"), str) \
                and data["task"] in task_names():
            default = getattr(get_task(data["task"]), "default_method", None)
            if default:
                data = {**data, "method": default}
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        problems: list[str] = []
        problems += _method_problems(self)
        task = get_task(self.task)
        if self.eval_data is None and self.early_stopping_patience is not None:
            self.early_stopping_patience = None  # nothing to stop on; not an error
        if self.max_length is not None and task.windowed and self.stride >= self.max_length // 2:
            problems.append(f"stride: {self.stride} must be below half of max_length ({self.max_length})")
        if self.packing and not task.generative:
            problems.append(f"packing: applies to generation, not {self.task}")
        if self.multi_label and not task.multi_label_capable:
            problems.append(f"multi_label: only classification can be multi-label, not {self.task}")
        if task.generative:
            problems += _encoder_only_problems(self)
        problems += _confidence_problems(self)
        problems += _privacy_problems(self)
        problems += _executor_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


#: options that tune an encoder with a new task head, which a causal LM does not have (its head is its LM head)
_ENCODER_ONLY = {"head_lr_multiplier": "speeds up the new task head of an encoder",
                 "warm_start_head": "fits a new classification head before fine-tuning",
                 "dropout": "sets the hidden and attention dropout of an encoder"}


def _encoder_only_problems(c: TrainConfig) -> list[str]:
    """Encoder heuristics a generative task refuses when asked for, and a default it does not take: its word
    embeddings train (a causal LM's embedding matrix is often its output layer too) unless frozen explicitly."""
    if "freeze_embeddings" not in c.model_fields_set:
        c.freeze_embeddings = False
    return [f"{name}: {what}, which a {c.task} model (a causal LM) does not have (leave it out)"
            for name, what in _ENCODER_ONLY.items() if getattr(c, name) != type(c).model_fields[name].default]


def _confidence_problems(c: TrainConfig) -> list[str]:
    given = [name for name in ("oos_label", "reject", "reject_target", "calibrate")
             if getattr(c, name) != type(c).model_fields[name].default]
    if not given:
        return []
    if not hasattr(get_task(c.task), "fit_confidence"):
        return [f"{name}: applies to classification, not {c.task}" for name in given]
    problems = [f"{name}: applies to single-label classification (leave out --multi-label)"
                for name in given if c.multi_label]
    if c.reject != "none" and c.oos_label is None:
        problems.append("reject: needs --oos-label, the label a rejected input gets")
    if c.reject_target != type(c).model_fields["reject_target"].default and c.oos_label is None:
        problems.append("reject_target: applies with --oos-label and --reject")
    for name in ("reject", "calibrate"):
        if name in given and c.eval_data is None:
            problems.append(f"{name}: is fitted on the dev set: give --eval-data")
    return problems


def _method_problems(c: TrainConfig) -> list[str]:
    if c.method not in method_names():
        return [f"method: '{c.method}' is not a method (choose one of: {', '.join(method_names())})"]
    m = get_method(c.method)
    task = get_task(c.task)
    problems = list(m.check(c))
    if not m.supports(task):
        supported = [t for t in task_names() if m.supports(get_task(t))]
        problems.append(f"method: {c.method} does not support {c.task} (it supports: {', '.join(supported)})")
    if m.own_loop:
        for name, default in (("adversarial", "none"), ("distill_from", None), ("augment", "none"),
                              ("layer_lr_decay", None)):
            if getattr(c, name) != default:
                problems.append(f"{name}: applies to methods trained with the Trainer loop, not {c.method}")
    elif c.unlabeled_data is not None and c.distill_from is None:
        problems.append("unlabeled_data: only setfit (self-training) and distillation (--distill-from) use it")
    if c.distill_from is not None and not (task.sequence_level and task.labelled):
        problems.append(f"distill_from: distillation is for classification, not {c.task}")
    if c.augment != "none" and not (task.sequence_level and "text" in task.columns):
        problems.append(f"augment: eda augments classification text, not {c.task}")
    return problems


def _format_validation(e: ValidationError, source: str) -> ConfigError:
    problems = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "config"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), list(TrainConfig.model_fields), n=1)
            msg = (f"unknown option{f' (did you mean {close[0]}?)' if close else ''} "
                   f"(allowed: {', '.join(sorted(TrainConfig.model_fields))})")
        elif msg.startswith("Value error, "):
            for part in msg[len("Value error, "):].split("; "):
                problems.append(part)
            continue
        else:
            msg = msg.replace("Input should be", "must be")
            if err["type"] != "missing" and _shown(err.get("input")):
                msg += f" (got {err['input']!r})"
        problems.append(f"{loc}: {msg}")
    return ConfigError(problems, hint=f"Fix the fields above in {source}.")


def _shown(value: Any) -> bool:
    """Whether a bad value is short enough to repeat in the message."""
    return isinstance(value, (int, float, str)) and len(repr(value)) <= 60


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
