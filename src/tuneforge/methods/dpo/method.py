"""DPO as a tuning method: how the model is made trainable, what its reference is, how it is saved and loaded.

The loss itself belongs to the generation task (:mod:`tuneforge.tasks.generation.preference`): this method marks
the model it prepares or loads with its :class:`~tuneforge.models.reference.Reference` (the model to compare with
and ``beta``), and the recipe trains it with the task's preference loss because ``preference`` is True.

* **LoRA** (default): the registered ``lora`` method's adapter (its options, targets and saving); the reference is
  the same model with the adapter disabled (peft's ``disable_adapter``), so no second copy is held. The run folder
  is a LoRA run folder and loads with ``PeftModel.from_pretrained`` on the base model.
* **full** (``dpo_full``): every weight trains against a frozen deep copy of the starting model; the run folder
  holds plain weights and the reference is loaded from the base model again for evaluation.

Dropout is switched off (TRL's ``disable_dropout``): the model and its reference then score the same pair the
same way at the first step, and the precomputed reference log-probabilities stay exact.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.methods.base import FitContext, FitResult, MethodDefaults, get_method
from tuneforge.methods.common import auto_model_class, load_plain, no_own_loop, save_plain
from tuneforge.methods.dpo.config import DpoOptions
from tuneforge.models.reference import Reference, frozen_copy_reference, set_reference

__all__ = ["DpoMethod", "adapter_disabled_reference", "disable_dropout"]


def disable_dropout(model: Any) -> None:
    """Every dropout of ``model`` (LoRA's included) set to 0."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def adapter_disabled_reference(model: Any, beta: float) -> Reference:
    """The reference of a LoRA model: itself with the adapter disabled."""

    @contextmanager
    def enter() -> Iterator[Any]:
        with model.disable_adapter():
            yield model

    return Reference(enter, beta, "the model with its adapter disabled")


def _is_adapter(model: Any) -> bool:
    return hasattr(model, "peft_config")


class DpoMethod(MethodDefaults):
    name = "dpo"
    summary = ("Direct preference optimization (DPO) on chosen/rejected answer pairs: a LoRA adapter learns to prefer "
               "the chosen answers against the starting model (generation only).")
    own_loop = False
    mergeable = True
    reload_best = True
    #: LoRA SFT's multiplier on the task's rate (TRL's own DPO default, 1e-6 for full fine-tuning, barely moves a
    #: LoRA adapter in the few steps of a small preference file)
    lr_scale = 5.0
    trains_encoder = False
    options_class = DpoOptions
    #: trains on preference pairs with the task's preference loss (the recipe asks for it by this attribute)
    preference = True
    #: each example is two sequences (the chosen and the rejected answer): an auto batch holds half the task's
    #: examples, so a DPO step costs what an SFT step does (4 pairs = 8 sequences) and a small preference file gets
    #: twice the updates: on 64 hh_harmless pairs (1 epoch, smollm2) 8 pairs a step (8 steps) left held-out
    #: preference accuracy at chance, 4 (16 steps) raised it from the base's 0.58 to 0.63 (docs/benchmarks.md)
    sequences_per_example = 2

    def supports(self, task: Any) -> bool:
        return bool(task.generative)

    def check(self, config: Any) -> list[str]:
        problems = []
        if getattr(config, "packing", False):
            problems.append("packing: dpo pads each batch of chosen and rejected answers; packing applies to "
                            "supervised fine-tuning (lora, full)")
        if getattr(config, "adversarial", "none") != "none":
            problems.append("adversarial: does not apply to dpo")
        return problems

    def prepare(self, model: Any, config: Any, task: Any, *, total_steps: int = 100) -> Any:
        opts = self.options(config)
        if opts.dpo_full:
            reference = frozen_copy_reference(copy.deepcopy(model), opts.dpo_beta)
        else:
            model = get_method("lora").prepare(model, config, task, total_steps=total_steps)
            reference = adapter_disabled_reference(model, opts.dpo_beta)
        disable_dropout(model)
        return set_reference(model, reference)

    def fit(self, ctx: FitContext) -> FitResult:
        return no_own_loop(self.name)  # type: ignore[no-any-return]

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        if _is_adapter(model):
            return get_method("lora").save(model, folder)
        return save_plain(model, folder)

    def load(self, run_dir: Path, manifest: dict[str, Any], base_path: Path | None, task: Any) -> Any:
        config = manifest.get("config") or {}
        beta = float(config.get("dpo_beta", DpoOptions.model_fields["dpo_beta"].default))
        if not config.get("dpo_full"):
            model = get_method("lora").load(run_dir, manifest, base_path, task)
            return set_reference(model, adapter_disabled_reference(model, beta))
        if base_path is None:
            raise ConfigError(f"{run_dir} was trained with full DPO, and its reference (the base model it started "
                              "from) cannot be found", hint="Put the base model folder back where it was trained.")
        model = load_plain(task, run_dir)
        reference = auto_model_class(task).from_pretrained(str(base_path), use_safetensors=True,
                                                           trust_remote_code=False)
        return set_reference(model, frozen_copy_reference(reference, beta))

    def merge(self, model: Any) -> Any:
        return model.merge_and_unload() if _is_adapter(model) else model
