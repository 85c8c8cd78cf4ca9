"""Direct preference optimization (DPO) of a causal language model on chosen / rejected answer pairs."""

from tuneforge.methods.base import register_method
from tuneforge.methods.dpo.method import DpoMethod

METHOD = register_method(DpoMethod())

__all__ = ["METHOD", "DpoMethod"]
