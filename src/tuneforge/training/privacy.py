"""Differentially private fine-tuning: DP-SGD through Opacus (``--dp-epsilon E --dp-delta D``).

Opacus computes every example's own gradient (hooks on the trainable layers: LoRA matrices, adapters, the task
head and the unfrozen encoder layers), clips it to ``dp_max_grad_norm``, adds Gaussian noise to their sum and
samples each batch by Poisson sampling (every example joins a step independently with probability ``sample
rate``), the sampling its accountant assumes. ``make_private_with_epsilon`` picks the noise multiplier that spends
exactly the target ε over the run's planned steps; the accountant (PRV by default, or RDP) then measures what the
steps actually taken spent, which the manifest records under ``privacy``.

What is protected is one training *example* (one row of the data file): a person with several rows is protected
as a group, with a weaker guarantee. The dev file is not training data: choosing the best epoch on it, and fitting
calibration or a reject option on it, spend none of the budget (the accountant covers every intermediate model).

:func:`train_private` is the loop (transformers' Trainer samples and clips its own way): the recipe builds the
task model, applies the method and builds the optimizer as for any run, and evaluates, saves and describes the
result as for any run. Options that would break the guarantee or Opacus' per-example gradients are refused when
the configuration is made (``PrivacyOptions`` in :mod:`tuneforge.training.config`): methods other than full, lora
and adapter, generation and windowed (QA) tasks, augmentation (copies of one example), distillation and a
warm-started head (non-private passes over the data), adversarial training and gradient checkpointing (extra
backward passes), gradient accumulation (use a larger batch: Poisson batches are not accumulated), trained
embeddings and bf16.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from tuneforge.errors import ConfigError
from tuneforge.training.setup import Prepared

__all__ = ["PrivateRun", "default_delta", "freeze_for_privacy", "train_private"]


def default_delta(n_examples: int) -> float:
    """δ when none is given: 1/(10·n). A δ near 1/n would allow releasing one example outright."""
    return 1.0 / (10 * max(1, n_examples))


def freeze_for_privacy(model: Any) -> int:
    """Freeze every embedding parameter (word, position and token-type tables and their LayerNorm), as Opacus
    requires for transformers; returns how many parameters this froze."""
    frozen = 0
    for name, p in model.named_parameters():
        if ".embeddings." in f".{name}" and p.requires_grad:
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen


@dataclass
class PrivateRun:
    """What :func:`train_private` hands back to the recipe."""

    model: Any
    steps: int
    epochs: float
    train_seconds: float
    final_loss: float | None
    #: the step whose weights were kept (the best dev evaluation; None without dev data: the last step)
    best_step: int | None
    #: the dev predictions of the kept weights (None without dev data)
    preds: list[dict[str, Any]] | None
    stopped_early: bool
    interrupted: bool
    #: the manifest's ``privacy`` section
    privacy: dict[str, Any] = field(default_factory=dict)


def _loss(logits: Any, labels: Any, *, per_token: bool, multi_label: bool, label_smoothing: float) -> Any:
    """The batch's mean of per-example losses. A token task averages each example over its own labelled tokens
    first: a mean over the batch's tokens would make one example's gradient depend on the others' lengths."""
    import torch.nn.functional as F

    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none").mean(-1).mean()
    if per_token:
        per = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none",
                              label_smoothing=label_smoothing)
        valid = (labels != -100).to(per.dtype)
        return ((per * valid).sum(1) / valid.sum(1).clamp(min=1)).mean()
    return F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing).mean()


@contextmanager
def _quiet_opacus() -> Iterator[None]:
    """Opacus' warnings that say nothing to a user here: the secure-RNG note (documented in
    docs/responsible-ai.md), RDP's order range, and torch's backward-hook note on frozen inputs."""
    with warnings.catch_warnings():
        for text in ("Secure RNG turned off", "Optimal order is the largest alpha", "Full backward hook",
                     "Using a non-full backward hook"):
            warnings.filterwarnings("ignore", message=f".*{text}")
        yield


def train_private(p: Prepared, model: Any, optimizer: Any, *, console: Console,
                  on_event: Callable[[dict[str, Any]], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> PrivateRun:
    """DP-SGD on ``model`` (the method-prepared task model, embeddings frozen) with ``optimizer`` (built for it):
    Opacus wraps the optimizer (per-example clipping and noise) and the data loader (Poisson sampling); the run
    takes the planned steps (epochs / sample rate), evaluates on the dev set each epoch (or every ``eval_every``
    steps) with early stopping, and keeps the best evaluation's weights."""
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader
    from transformers import get_scheduler

    c = p.config
    features = p.train_features
    n = len(features)
    if p.train_enc.n_examples != n:
        raise ConfigError(f"dp_epsilon: {p.train_enc.n_examples} training examples became {n} inputs (long ones "
                          "were split); differential privacy protects one input per example",
                          hint="Raise --max-length, or shorten the longest examples.")
    delta = c.dp_delta if c.dp_delta is not None else default_delta(n)
    loader: DataLoader[Any] = DataLoader(features, batch_size=p.hp["batch_size"],  # type: ignore[arg-type]
                                         shuffle=True, collate_fn=p.task.collator(p.tokenizer))
    sample_rate = 1 / len(loader)  # as Opacus computes it: batch / n, rounded to whole batches per epoch
    planned = int(p.hp["epochs"] / sample_rate)  # the steps Opacus calibrates the noise for
    if planned < 1:
        raise ConfigError(f"epochs: {p.hp['epochs']:g} epochs of {n} examples make no full step",
                          hint="Train for more epochs.")
    model.train()
    with _quiet_opacus():
        engine = PrivacyEngine(accountant=c.dp_accountant)
        try:
            hooks, dp_optimizer, dp_loader = engine.make_private_with_epsilon(
                module=model, optimizer=optimizer, data_loader=loader, target_epsilon=c.dp_epsilon,
                target_delta=delta, epochs=p.hp["epochs"], max_grad_norm=c.dp_max_grad_norm, poisson_sampling=True,
                wrap_model=False)
        except ValueError as e:  # e.g. "The privacy budget is too low."
            raise ConfigError(f"dp_epsilon: Opacus cannot reach ε = {c.dp_epsilon:g} at δ = {delta:g} over "
                              f"{planned} steps: {e}",
                              hint="Give a larger --dp-epsilon or train fewer steps.") from None
    sigma = float(dp_optimizer.noise_multiplier)
    console.print(f"Differential privacy: target ε {c.dp_epsilon:g} at δ {delta:.3g} over {planned} steps "
                  f"(sample rate {sample_rate:.4g}, Poisson sampling): noise multiplier {sigma:.4f}, per-example "
                  f"gradients clipped to {c.dp_max_grad_norm:g}, {c.dp_accountant} accountant")
    scheduler = get_scheduler(c.lr_scheduler, optimizer=optimizer,
                              num_warmup_steps=math.ceil(c.warmup_ratio * planned), num_training_steps=planned)
    per_epoch = len(dp_loader)
    eval_every = c.eval_every or per_epoch
    keeper = _BestKeeper(p, model)
    step, losses, last_loss = 0, [], None
    stopped_early = interrupted = False
    t0 = time.time()
    with _quiet_opacus():
        while step < planned and not (stopped_early or interrupted):
            for batch in dp_loader:
                loss = _private_step(model, dp_optimizer, batch, p)
                scheduler.step()
                step += 1
                if loss is not None:
                    losses.append(loss)
                if step % c.logging_steps == 0 or step == planned:
                    last_loss = sum(losses) / len(losses) if losses else last_loss
                    losses = []
                    lr = float(scheduler.get_last_lr()[0])
                    console.print(f"step {step}/{planned} epoch {step / per_epoch:.2f} loss "
                                  f"{last_loss if last_loss is not None else float('nan'):.4f} lr {lr:.2e}")
                    if on_event is not None and last_loss is not None:
                        on_event({"type": "metrics", "step": step, "epoch": step / per_epoch, "total_steps": planned,
                                  "loss": last_loss, "learning_rate": lr})
                if p.eval_enc is not None and (step % eval_every == 0 or step == planned):
                    scores = keeper.evaluate(step)
                    model.train()
                    console.print(f"[cyan]dev[/] step {step} (epoch {step / per_epoch:.2f}): "
                                  + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
                    if on_event is not None:
                        on_event({"type": "metrics", "step": step, "epoch": step / per_epoch, "total_steps": planned,
                                  **{f"eval_{k}": v for k, v in scores.items()}})
                    patience = c.early_stopping_patience
                    stopped_early = patience is not None and keeper.since_best >= patience
                if should_stop is not None and should_stop():
                    interrupted = True
                if step >= planned or stopped_early or interrupted:
                    break
    train_seconds = time.time() - t0
    hooks.cleanup()  # the per-example gradient hooks and attributes leave the model before it is evaluated or saved
    if losses:
        last_loss = sum(losses) / len(losses)
    epsilon = float(engine.get_epsilon(delta)) if step else 0.0
    keeper.restore()
    privacy = {"epsilon": round(epsilon, 6), "delta": delta, "accountant": c.dp_accountant,
               "noise_multiplier": sigma, "max_grad_norm": c.dp_max_grad_norm, "sample_rate": sample_rate,
               "steps": step, "target_epsilon": c.dp_epsilon, "planned_steps": planned,
               "delta_source": "given" if c.dp_delta is not None else "1/(10 n)", "examples": n,
               "unit": "training example", "sampling": "poisson", "clipping": "flat, per example",
               "library": "opacus " + _opacus_version()}
    return PrivateRun(model=model, steps=step, epochs=round(step / per_epoch, 3), train_seconds=train_seconds,
                      final_loss=None if last_loss is None else round(float(last_loss), 5),
                      best_step=keeper.best_step, preds=keeper.best_preds, stopped_early=stopped_early,
                      interrupted=interrupted, privacy=privacy)


def _private_step(model: Any, dp_optimizer: Any, batch: Any, p: Prepared) -> float | None:
    """One DP-SGD step on a Poisson batch: per-example gradients, clipped, summed, noised, applied. An empty batch
    (every example left out, which Poisson sampling allows) still takes its noisy step: the accountant counts it."""
    import torch

    batch = dict(batch)
    labels = batch.pop("labels")
    dp_optimizer.zero_grad(set_to_none=True)
    if len(labels) == 0:
        for param in dp_optimizer.params:
            param.grad_sample = torch.zeros((0, *param.shape), dtype=param.dtype, device=param.device)
        dp_optimizer.step()
        return None
    logits = model(**batch).logits
    loss = _loss(logits, labels, per_token=p.task.per_token, multi_label=p.multi_label,
                 label_smoothing=p.config.label_smoothing)
    loss.backward()
    dp_optimizer.step()
    return float(loss.detach())


class _BestKeeper:
    """The dev evaluations of a run: scores each, keeps a copy of the trainable weights (and the decoded
    predictions) of the best one, and puts them back at the end."""

    def __init__(self, p: Prepared, model: Any) -> None:
        self.p, self.model = p, model
        self.best_step: int | None = None
        self.best_score: float | None = None
        self.best_preds: list[dict[str, Any]] | None = None
        self.best_weights: dict[str, Any] = {}
        self.since_best = 0

    def evaluate(self, step: int) -> dict[str, float]:
        from tuneforge.training.dev_eval import dev_predictions

        p = self.p
        assert p.eval_ds is not None
        preds = dev_predictions(p, self.model, batch_size=p.config.eval_batch_size, bf16=False)
        raw = p.task.score(preds, p.eval_ds.examples, p.labels, multi_label=p.multi_label)
        scores = {k: float(v) for k, v in raw.items() if isinstance(v, (int, float)) and k != "n"}
        score = scores.get(p.task.main_metric)
        higher = getattr(p.task, "greater_is_better", True)
        if score is not None and (self.best_score is None or (score > self.best_score if higher
                                                               else score < self.best_score)):
            self.best_step, self.best_score, self.best_preds, self.since_best = step, score, preds, 0
            self.best_weights = {name: t.detach().clone() for name, t in self.model.named_parameters()
                                 if t.requires_grad}
        else:
            self.since_best += 1
        return scores

    def restore(self) -> None:
        import torch

        if not self.best_weights:
            return
        with torch.no_grad():
            for name, t in self.model.named_parameters():
                if name in self.best_weights:
                    t.copy_(self.best_weights[name])


def _opacus_version() -> str:
    import opacus

    return str(opacus.__version__)
