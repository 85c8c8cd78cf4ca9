"""Elastic weight consolidation (Kirkpatrick et al., 2017, "Overcoming catastrophic forgetting in neural
networks"): while re-training, a quadratic penalty keeps each weight near its old value in proportion to how much
the old task needed it, measured by the diagonal of the Fisher information on the old data::

    loss = task loss + lambda / 2 * sum_i F_i * (theta_i - theta_old_i) ** 2

``F`` is the empirical Fisher (each old example's squared loss gradient, averaged), normalised to mean 1 over the
weights it covers, so that ``lambda`` weighs the penalty against the task loss the same way for any model size.
It covers the encoder, not the task head (pooler and classifier): a re-training run may resize the head for new
classes and fits it afresh on frozen features first, and the pooler's Fisher, far above the encoder's, would
otherwise take the whole normalisation.
The penalty joins the Trainer as a callback: its gradient ``lambda * F * (theta - theta_old)`` is added to each
weight's gradient during the backward pass (a tensor hook), exactly the gradient of the loss above, before
clipping and the optimizer step. Weights of the new model that the old one lacks (a head resized for new classes)
are not penalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

__all__ = ["EWCCallback", "Fisher", "ewc_penalty", "fisher_diagonal"]

#: old examples the Fisher diagonal is estimated on (one forward and backward pass each)
FISHER_EXAMPLES = 256


@dataclass
class Fisher:
    """The old weights and their (normalised) Fisher diagonal, by parameter name."""

    theta: dict[str, torch.Tensor]
    fisher: dict[str, torch.Tensor]
    examples: int

    def __len__(self) -> int:
        return len(self.fisher)


def _key(name: str) -> str:
    """A parameter's name without the wrappers a tuning method adds (peft's ``base_model.model.``)."""
    while name.startswith("base_model.model."):
        name = name[len("base_model.model."):]
    return name


def _in_encoder(model: Any, name: str) -> bool:
    """Whether parameter ``name`` belongs to the encoder (not the task head, not the pooler)."""
    prefix = getattr(model, "base_model_prefix", "") or ""
    key = _key(name)
    return bool(prefix) and key.startswith(prefix + ".") and ".pooler." not in key


def fisher_diagonal(model: Any, features: Sequence[dict[str, Any]], collator: Any, *, seed: int = 0,
                    max_examples: int = FISHER_EXAMPLES) -> Fisher:
    """The empirical Fisher diagonal of ``model`` on (a seeded sample of) labelled ``features``: each example's
    loss gradient squared, averaged, for every trainable parameter; normalised to mean 1."""
    if not features or "labels" not in features[0]:
        raise ValueError("the Fisher information needs labelled features")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(features), size=min(max_examples, len(features)), replace=False)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad and _in_encoder(model, n)}
    sums = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    was_training = model.training
    model.eval()  # no dropout: the gradient of the model as it predicts
    device = next(model.parameters()).device
    for i in idx:
        batch = collator([dict(features[int(i)])])
        batch = {k: v.to(device) for k, v in batch.items() if hasattr(v, "to")}
        model.zero_grad(set_to_none=True)
        out = model(**batch)
        out.loss.backward()
        for n, p in params.items():
            if p.grad is not None:
                sums[n] += p.grad.detach().float() ** 2
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    n_ex = len(idx)
    fisher = {n: s / n_ex for n, s in sums.items()}
    total = sum(float(f.sum()) for f in fisher.values())
    count = sum(f.numel() for f in fisher.values())
    mean = total / max(1, count)
    if mean > 0:
        fisher = {n: f / mean for n, f in fisher.items()}
    theta = {_key(n): p.detach().float().clone() for n, p in params.items()}
    return Fisher(theta=theta, fisher={_key(n): f for n, f in fisher.items()}, examples=n_ex)


def _pairs(model: Any, fisher: Fisher) -> list[tuple[str, torch.nn.Parameter, torch.Tensor, torch.Tensor]]:
    """(name, parameter, old value, Fisher) for each trainable parameter of ``model`` the old model had, same shape;
    the Fisher renormalised to mean 1 over these (the weights the run trains, not the frozen ones)."""
    found = []
    for name, p in model.named_parameters():
        key = _key(name)
        if not p.requires_grad or key not in fisher.fisher or fisher.fisher[key].shape != p.shape:
            continue
        found.append((key, p))
    total = sum(float(fisher.fisher[k].sum()) for k, _ in found)
    count = sum(fisher.fisher[k].numel() for k, _ in found)
    scale = count / total if total > 0 else 1.0
    return [(k, p, fisher.theta[k].to(p.device), (fisher.fisher[k] * scale).to(p.device)) for k, p in found]


def ewc_penalty(model: Any, fisher: Fisher, lam: float) -> float:
    """``lambda / 2 * sum F (theta - theta_old)^2`` over the parameters the penalty covers (0 at the old weights)."""
    total = 0.0
    with torch.no_grad():
        for _, p, theta, f in _pairs(model, fisher):
            total += float((f * (p.detach().float() - theta) ** 2).sum())
    return 0.5 * lam * total


class EWCCallback(TrainerCallback):
    """Adds the EWC penalty's gradient to every covered weight's gradient while the Trainer trains; ``summary``
    says how many tensors it covered and the penalty at the end."""

    def __init__(self, fisher: Fisher, lam: float) -> None:
        if lam < 0:
            raise ValueError(f"ewc: lambda must be 0 or more, not {lam}")
        self.fisher = fisher
        self.lam = lam
        self._handles: list[Any] = []
        self.summary: dict[str, Any] = {"lambda": lam, "fisher_examples": fisher.examples}

    def attach(self, model: Any, *, accumulation: int = 1) -> int:
        """Register the gradient hooks on ``model``; returns the number of parameter tensors covered."""
        self.detach()
        scale = self.lam / max(1, accumulation)  # each micro-batch's backward adds its share
        pairs = _pairs(model, self.fisher)
        for _, p, theta, f in pairs:
            def hook(grad: torch.Tensor, p: torch.Tensor = p, theta: torch.Tensor = theta,
                     f: torch.Tensor = f) -> torch.Tensor:
                return grad + (scale * f * (p.detach().float() - theta)).to(grad.dtype)

            self._handles.append(p.register_hook(hook))
        self.summary["tensors"] = len(pairs)
        self.summary["weights"] = int(sum(p.numel() for _, p, _, _ in pairs))
        return len(pairs)

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        if model is not None:
            self.attach(model, accumulation=int(getattr(args, "gradient_accumulation_steps", 1) or 1))

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        if model is not None:
            self.summary["final_penalty"] = round(ewc_penalty(model, self.fisher, self.lam), 6)
        self.detach()
