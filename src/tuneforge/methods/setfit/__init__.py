"""Few-shot classification with ``setfit``: contrastive fine-tuning of a sentence encoder on pairs of the few
labelled examples, then a logistic-regression head; label descriptions join the examples, and unlabelled text
can be pseudo-labelled above a confidence threshold to refit the head (self-training)."""

from tuneforge.methods.base import register_method
from tuneforge.methods.setfit.method import SetFitMethod

METHOD = register_method(SetFitMethod())

__all__ = ["METHOD", "SetFitMethod"]
