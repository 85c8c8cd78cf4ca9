"""transformers' ``Trainer`` with two documented extension points filled in: ``compute_loss`` (distillation from
a teacher's soft targets) and ``training_step`` (adversarial passes after the clean one). Both are optional and
compose with every Trainer method. ``_load_best_model`` is skipped when the best checkpoint is the last step's,
whose weights are the ones in memory."""

from __future__ import annotations

from typing import Any

from transformers import Trainer

from tuneforge.training.adversarial import EmbeddingAdversary
from tuneforge.training.distill import distillation_loss

__all__ = ["TuneforgeTrainer"]


class TuneforgeTrainer(Trainer):
    def __init__(self, *args: Any, adversary: EmbeddingAdversary | None = None,
                 distill: dict[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.adversary = adversary
        self.distill = distill

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        teacher = inputs.pop("teacher_probs", None)
        if teacher is None or self.distill is None:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        labels = inputs.pop("labels", None)
        outputs = model(**inputs)
        loss = distillation_loss(outputs.logits, labels, teacher, alpha=self.distill["alpha"],
                                 temperature=self.distill["temperature"])
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        if self.adversary is None:
            return super().training_step(model, inputs, num_items_in_batch)
        kept = dict(inputs)  # compute_loss pops labels (label smoothing) and teacher_probs
        self.adversary.begin()
        loss = super().training_step(model, inputs, num_items_in_batch)
        prepared = self._prepare_inputs(kept)
        scale = 1.0 / max(1, self.args.gradient_accumulation_steps)
        self.adversary.attack(lambda: self.compute_loss(model, dict(prepared)), scale=scale)
        return loss

    def _load_best_model(self) -> None:
        # the best checkpoint was saved from the weights still in memory: reading it back changes nothing
        if self.state.best_global_step is not None and self.state.best_global_step == self.state.global_step:
            return
        super()._load_best_model()
