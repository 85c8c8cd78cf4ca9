"""Full fine-tuning: every weight of the encoder and the task head trains (TuneForge's default)."""

from tuneforge.methods.base import register_method
from tuneforge.methods.full.method import FullFineTuning

METHOD = register_method(FullFineTuning())

__all__ = ["METHOD", "FullFineTuning"]
