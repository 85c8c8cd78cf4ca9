"""transformers' ``Trainer`` with two documented extension points filled in: ``compute_loss`` (distillation from
a teacher's soft targets) and ``training_step`` (adversarial passes after the clean one). Both are optional and
compose with every Trainer method. ``_load_best_model`` is skipped when the best checkpoint is the last step's,
whose weights are the ones in memory.

A preference objective (DPO: ``preference``, the task's :class:`~tuneforge.tasks.generation.preference.
PreferenceLoss`) replaces the model's loss in training and evaluation; its per-pair metrics (TRL's
``rewards/accuracies``, ``rewards/margins`` ...) are averaged into each training log, and into each evaluation's
metrics with the ``eval_`` prefix, where ``eval_valid_loss`` is the DPO loss on the dev pairs (the generation
task's main metric, so early stopping and the best checkpoint follow it)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from transformers import Trainer

from tuneforge.training.adversarial import EmbeddingAdversary
from tuneforge.training.distill import distillation_loss

__all__ = ["TuneforgeTrainer"]


class TuneforgeTrainer(Trainer):
    def __init__(self, *args: Any, adversary: EmbeddingAdversary | None = None,
                 distill: dict[str, float] | None = None, train_loss: Any = None, preference: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.adversary = adversary
        self.distill = distill
        #: ``train_loss(model, inputs, num_items_in_batch, metrics)``: the task's own training loss (a generative
        #: task's loss over its learned tokens only; ``metrics`` gets per-token figures such as
        #: ``mean_token_accuracy``, averaged into each training log); evaluation keeps the model's loss and logits
        self.train_loss = train_loss
        #: ``preference(model, inputs) -> (loss, per-pair metrics)``: the loss of a preference method (DPO)
        self.preference = preference
        self._pair_metrics: dict[str, defaultdict[str, list[Any]]] = {"train": defaultdict(list),
                                                                      "eval": defaultdict(list)}
        if preference is not None:
            self.loss_is_scaled_for_ga = False  # a mean over the batch's pairs: Trainer divides by accumulation

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if self.preference is not None:
            loss, metrics = self.preference(model, inputs)
            self._keep_pair_metrics("train" if model.training else "eval", metrics)
            return (loss, None) if return_outputs else loss
        if self.train_loss is not None and model.training and not return_outputs and "labels" in inputs:
            per_token: dict[str, Any] = {}  # e.g. mean_token_accuracy, averaged into the next training log
            loss = self.train_loss(model, inputs, num_items_in_batch, per_token)
            self._keep_pair_metrics("train", per_token)
            return loss
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

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> Any:
        if self.preference is None:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        import torch

        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, metrics = self.preference(model, inputs)
        self._keep_pair_metrics("eval", metrics)
        return loss.detach(), None, None

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        output = super().evaluation_loop(*args, **kwargs)
        if self.preference is not None:
            prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
            averaged = self._take_pair_metrics("eval")
            if "loss" in averaged:
                averaged["valid_loss"] = averaged.pop("loss")
            if output.metrics is not None:
                output.metrics.update({f"{prefix}_{k}": v for k, v in averaged.items()})
        return output

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log (evaluations report theirs above): the kept per-pair/per-token metrics
            logs.update({k: v for k, v in self._take_pair_metrics("train").items() if k != "loss"})
        super().log(logs, start_time)

    def preference_summary(self, best_step: int | None = None) -> dict[str, dict[str, float]]:
        """The preference metrics of the last training log (``train``) and of the evaluation at ``best_step``, else
        the last one (``eval``), under TRL's names, from the log history."""
        out: dict[str, dict[str, float]] = {}
        for entry in reversed(self.state.log_history):
            if "train" not in out and "rewards/accuracies" in entry:
                out["train"] = {k: v for k, v in entry.items() if k.startswith(("rewards/", "logps/"))}
            if "eval_rewards/accuracies" in entry and ("eval" not in out or entry.get("step") == best_step):
                out["eval"] = {k.removeprefix("eval_"): v for k, v in entry.items()
                               if k.startswith(("eval_rewards/", "eval_logps/")) or k == "eval_valid_loss"}
        return out

    def _keep_pair_metrics(self, split: str, metrics: dict[str, Any]) -> None:
        for k, v in metrics.items():
            self._pair_metrics[split][k].append(v.detach().float().cpu())

    def _take_pair_metrics(self, split: str) -> dict[str, float]:
        """The per-pair metrics kept since the last call, averaged over pairs (and forgotten)."""
        import torch

        kept = self._pair_metrics[split]
        averaged = {k: float(torch.cat(v).mean()) for k, v in kept.items() if v}
        kept.clear()
        return averaged

    def _load_best_model(self) -> None:
        # the best checkpoint was saved from the weights still in memory: reading it back changes nothing
        if self.state.best_global_step is not None and self.state.best_global_step == self.state.global_step:
            return
        super()._load_best_model()
