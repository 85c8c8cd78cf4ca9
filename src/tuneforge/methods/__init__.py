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
dpo                generation: direct preference optimization on chosen/rejected pairs (a LoRA adapter by
                   default, or every weight against a frozen copy)
=================  =========================================================================================

Each method's options live in its folder's ``config.py`` (a pydantic model, e.g. ``LoraOptions``);
:class:`~tuneforge.methods.options.AllMethodOptions` is their union, the flat fields a run configuration carries.
"""

from tuneforge.methods import bottleneck, dpo, full, peft, setfit, zeroshot  # noqa: F401  (registration)
from tuneforge.methods.base import (
    FitContext,
    FitResult,
    Method,
    MethodDefaults,
    MethodOptions,
    RunConfig,
    get_method,
    method_names,
    parameter_report,
    register_method,
)
from tuneforge.methods.options import AllMethodOptions

__all__ = ["AllMethodOptions", "FitContext", "FitResult", "Method", "MethodDefaults", "MethodOptions", "RunConfig",
           "get_method", "method_names", "parameter_report", "register_method"]
