"""Every method's options side by side: the flat option fields a run configuration carries (training's
``TrainConfig`` inherits them, so YAML keys and CLI flags stay flat). A method reads only its own, as its own
options object (:meth:`~tuneforge.methods.base.MethodDefaults.options`); a new method with options adds its class
here (a test checks that each registered method's options are)."""

from __future__ import annotations

from tuneforge.methods.bottleneck.config import AdapterOptions
from tuneforge.methods.dpo.config import DpoOptions
from tuneforge.methods.peft.config import LoraOptions, PromptOptions
from tuneforge.methods.setfit.config import SetFitOptions

__all__ = ["AllMethodOptions"]


class AllMethodOptions(DpoOptions, SetFitOptions, PromptOptions, AdapterOptions, LoraOptions):
    """The union of the methods' options (zero-shot's are part of SetFit's, LoRA's part of DPO's)."""
