"""Adversarial training on the word embeddings: FGM (Miyato et al. 2017) and PGD (Madry et al. 2018).

The perturbation is added to the *output* of the word-embedding layer through a forward hook, so it works with
frozen embeddings (TuneForge's default) and with any method (full, LoRA, adapters ...), and the embedding
weights themselves are never modified: nothing needs restoring, and a plain forward after a step is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["EmbeddingAdversary"]


class EmbeddingAdversary:
    """After the clean backward pass, :meth:`attack` adds the loss on perturbed embeddings to the gradients."""

    def __init__(self, model: Any, kind: str, epsilon: float, steps: int = 3) -> None:
        if kind not in ("fgm", "pgd"):
            raise ValueError(f"unknown adversarial training {kind!r}")
        self.kind = kind
        self.epsilon = epsilon
        self.steps = steps if kind == "pgd" else 1
        self.alpha = epsilon / self.steps * 1.5 if kind == "pgd" else epsilon
        self.capture = False
        self.delta: torch.Tensor | None = None
        self.clean: torch.Tensor | None = None
        self.handle = model.get_input_embeddings().register_forward_hook(self._hook)

    def _hook(self, module: Any, inputs: Any, out: torch.Tensor) -> torch.Tensor:
        if self.delta is not None:
            return out + self.delta
        if self.capture:
            if not out.requires_grad:  # frozen embeddings: make the output a leaf we can take gradients of
                out = out.detach().requires_grad_(True)
            out.retain_grad()
            self.clean = out
        return out

    def begin(self) -> None:
        """Call before the clean forward pass: it keeps the embedding output to read its gradient."""
        self.capture = True
        self.clean = None

    def _normalized(self, g: torch.Tensor) -> torch.Tensor:
        norm = g.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (g.dim() - 1)))
        return g / norm

    def _project(self, d: torch.Tensor) -> torch.Tensor:
        norm = d.flatten(1).norm(dim=1).view(-1, *([1] * (d.dim() - 1)))
        return d * torch.clamp(self.epsilon / norm.clamp(min=1e-12), max=1.0)

    def attack(self, loss_fn: Callable[[], torch.Tensor], scale: float = 1.0) -> float | None:
        """Run the adversarial pass(es); their gradients are added to the parameters'. Returns the adversarial
        loss (None when the clean pass left no embedding gradient)."""
        self.capture = False
        clean = self.clean
        self.clean = None
        if clean is None or clean.grad is None:
            return None
        g = clean.grad.detach()
        delta = self.alpha * self._normalized(g)
        try:
            for _ in range(self.steps - 1):  # PGD: ascend inside the epsilon ball without touching parameter grads
                self.delta = delta.requires_grad_(True)
                loss = loss_fn()
                (grad,) = torch.autograd.grad(loss, self.delta)
                delta = self._project(delta.detach() + self.alpha * self._normalized(grad.detach()))
            self.delta = self._project(delta.detach())
            loss = loss_fn()
            (loss * scale).backward()
            return float(loss.detach())
        finally:
            self.delta = None

    def remove(self) -> None:
        self.handle.remove()
