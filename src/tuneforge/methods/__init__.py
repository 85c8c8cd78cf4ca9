"""Tuning methods, one folder each; importing this package registers them (see :mod:`tuneforge.methods.base`).

=================  =========================================================================================
full               every weight trains (default)
lora, adalora,     parameter-efficient methods through ``peft``; the task head trains and is saved with them
ia3, prompt_tuning,
p_tuning
adapter            bottleneck adapters (Houlsby et al. 2019), our own small implementation
setfit             few-shot classification: contrastive sentence-encoder fine-tuning + a head (``setfit``),
                   optionally self-training on unlabelled text
zeroshot           no training: similarity between the text and label descriptions
=================  =========================================================================================
"""

from tuneforge.methods import bottleneck, full, peft, setfit, zeroshot  # noqa: F401  (registration)
from tuneforge.methods.base import (
    FitContext,
    FitResult,
    Method,
    get_method,
    method_names,
    parameter_report,
    register_method,
)

__all__ = ["FitContext", "FitResult", "Method", "get_method", "method_names", "parameter_report",
           "register_method"]
