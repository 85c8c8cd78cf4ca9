"""Parameter-efficient methods through ``peft``: LoRA, AdaLoRA, IA3, prompt tuning and P-tuning.

Prefix tuning is left out: on BERT in transformers 5 it fails ("does not support past key values").
Prompt tuning and P-tuning prepend virtual tokens, which shifts per-token outputs; peft 0.21 does not realign
NER and QA labels to them, so those two are offered for classification only.
"""

from tuneforge.methods.base import register_method
from tuneforge.methods.peft.method import PEFT_METHODS, PeftMethod

METHODS = [register_method(m) for m in PEFT_METHODS]

__all__ = ["METHODS", "PeftMethod"]
