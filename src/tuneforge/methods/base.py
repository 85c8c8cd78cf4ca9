"""The tuning-method interface and its registry.

A method decides how a task model is made trainable (all weights, LoRA matrices, bottleneck adapters ...), how
the trained result is written into a run folder, how it is loaded back for inference and, where the method
allows, how it is merged into a plain model for export. Each method lives in its own folder under
``tuneforge.methods`` and registers itself on import; the training recipe and the predictor ask the registry,
never an if-chain.

Two kinds of methods exist:

* **trainer methods** (``own_loop = False``): the recipe builds the task model, hands it to :meth:`Method.prepare`
  and runs transformers' ``Trainer`` on the result; every training option (FGM/PGD, distillation, layer-wise
  learning-rate decay, ...) composes with them;
* **own-loop methods** (``own_loop = True``, e.g. SetFit and zero-shot): :meth:`Method.fit` trains (or builds)
  the model itself and returns a module whose forward gives ``logits`` like a transformers model, so
  evaluation and serving are shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from tuneforge.errors import ConfigError

__all__ = ["FitContext", "FitResult", "Method", "MethodDefaults", "MethodOptions", "RunConfig", "get_method",
           "method_names", "parameter_report", "register_method"]

class RunConfig(Protocol):
    """What a method reads from a run's configuration besides its own options (which it gets with
    :meth:`Method.options`); training's ``TrainConfig`` is one."""

    task: str
    method: str
    multi_label: bool | None
    seed: int
    epochs: float | Literal["auto"]  # a number once the run is set up (auto: OpenAI's rule for its data size)
    learning_rate: float | None
    batch_size: int | None
    max_length: int | None


class MethodOptions(BaseModel):
    """The base of every method's options (a method without options has exactly these: none)."""


@dataclass
class FitContext:
    """What an own-loop method gets from the recipe: the validated data, labels and resolved base model."""

    config: RunConfig
    task: Any
    base_path: Path
    labels: list[str]
    train_examples: list[dict[str, Any]]
    tokenizer: Any
    console: Any
    settings: Any
    unlabeled_texts: list[str] = field(default_factory=list)


@dataclass
class FitResult:
    model: Any
    #: what the method did, for the manifest (encoder used, rounds of self-training, ...)
    info: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    final_loss: float | None = None


class MethodDefaults:
    """The no-op answers most methods give; a method class inherits these and overrides what it changes."""

    trains_encoder = False
    preference = False
    #: sequences the model sees per training example (DPO: 2); an auto batch size is divided by it
    sequences_per_example = 1
    options_class: type[MethodOptions] = MethodOptions

    def options(self, config: Any) -> Any:
        """The method's own options (an ``options_class`` object) taken from a run configuration."""
        return self.options_class.model_validate({k: getattr(config, k) for k in self.options_class.model_fields})

    def supports(self, task: Any) -> bool:
        """Whether the method can train ``task`` (a task object: decided by its attributes, never its name)."""
        return not task.generative

    def check(self, config: Any) -> list[str]:
        return []

    def base_model(self, config: Any, requested: Any, settings: Any) -> tuple[Any, str | None]:
        return requested, None

    def trainer_callbacks(self, model: Any) -> list[Any]:
        return []

    def merge(self, model: Any) -> Any:
        return model


class Method(Protocol):
    name: str
    #: one line for `--help` and the docs
    summary: str
    own_loop: bool
    #: whether :meth:`merge` can fold the method into a plain transformers model
    mergeable: bool
    #: multiplier on the auto learning rate of the non-head trainable weights (LoRA wants ~5x full fine-tuning's)
    lr_scale: float
    #: whether the best dev checkpoint is reloaded at the end of training (false where shapes change in training)
    reload_best: bool
    #: whether the method updates the pretrained encoder's own weights (``freeze_layers: auto`` applies only then)
    trains_encoder: bool
    #: whether the method trains on preference pairs with the task's preference loss (DPO) instead of the model's
    #: own loss on labelled examples
    preference: bool
    @property
    def options_class(self) -> type[MethodOptions]:
        """The method's options (a pydantic model; its fields are flat keys of the run configuration)."""

    def options(self, config: RunConfig) -> Any:
        """The method's own options, an ``options_class`` object, from a run configuration."""

    def supports(self, task: Any) -> bool:
        """Whether the method can train ``task``, judged by the task's attributes."""

    def check(self, config: RunConfig) -> list[str]:
        """Problems with the method's options in ``config`` (empty when fine); named by field."""

    def base_model(self, config: RunConfig, requested: Any, settings: Any) -> tuple[Any, str | None]:
        """The base model the method trains on: usually ``requested``; returns (model, note for the user)."""

    def prepare(self, model: Any, config: RunConfig, task: Any, *, total_steps: int = 100) -> Any:
        """Make the task model trainable the method's way; the task head always stays trainable."""

    def trainer_callbacks(self, model: Any) -> list[Any]:
        """Trainer callbacks the method needs (AdaLoRA's rank budget); usually none."""

    def fit(self, ctx: FitContext) -> FitResult:
        """Own-loop methods: train and return the model (trainer methods raise NotImplementedError)."""

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        """Write the trained weights into ``folder`` (safetensors only); returns manifest info (files, bytes)."""

    def load(self, run_dir: Path, manifest: dict[str, Any], base_path: Path | None, task: Any) -> Any:
        """The model saved in ``run_dir`` for ``task`` (the task object), ready for inference (eval mode), with its
        task head."""

    def merge(self, model: Any) -> Any:
        """A plain transformers model with the method folded into its weights (ConfigError if impossible)."""


_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    if method.name in _METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    import tuneforge.methods  # noqa: F401  (importing the package registers the built-in methods)

    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"method: unknown method '{name}' (choose one of: {', '.join(method_names())})") from None


def method_names() -> list[str]:
    import tuneforge.methods  # noqa: F401

    return sorted(_METHODS)


def parameter_report(model: Any) -> dict[str, int]:
    """Total and trainable parameters of a model."""
    total = trainable = 0
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return {"parameters": total, "trainable_parameters": trainable}


def folder_bytes(folder: Path, names: list[str]) -> int:
    return sum((folder / n).stat().st_size for n in names if (folder / n).exists())
