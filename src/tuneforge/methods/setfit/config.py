"""The options of SetFit, read from the run configuration (``setfit_iterations: 10``, ``--setfit-iterations``):
zero-shot's label texts and encoder choice, plus the contrastive fine-tuning and self-training knobs."""

from __future__ import annotations

from pydantic import Field

from tuneforge.methods.zeroshot.config import ZeroShotOptions

__all__ = ["SetFitOptions"]


class SetFitOptions(ZeroShotOptions):
    setfit_iterations: int = Field(10, ge=1, le=100, description="setfit: pairs generated per example for the "
                                                                 "contrastive fine-tuning.")
    setfit_max_pairs: int | None = Field(
        None, ge=1, description="setfit: stop the contrastive fine-tuning after this many pairs (none: all the "
                                "pairs the iterations generate: 2 per example per iteration, 10,000 for 64 "
                                "examples of each of 77 classes at a single iteration).")
    description_copies: int = Field(4, ge=0, le=100, description="setfit: times each label text joins the "
                                                                 "examples (0: label texts unused).")
    self_training_threshold: float = Field(0.9, gt=0.5, le=1, description="setfit: pseudo-labels need at least "
                                                                          "this predicted probability.")
