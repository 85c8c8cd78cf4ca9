"""Zero-shot classification: no training; the label whose description (or template, e.g. "This review is
{label}.") is most similar to the text, both embedded by the sentence encoder with mean pooling."""

from tuneforge.methods.base import register_method
from tuneforge.methods.zeroshot.method import ZeroShot

METHOD = register_method(ZeroShot())

__all__ = ["METHOD", "ZeroShot"]
