"""The options of the peft methods, read from the run configuration (flat keys: ``lora_r: 8`` in YAML,
``--lora-r 8`` on the command line)."""

from __future__ import annotations

from pydantic import Field

from tuneforge.methods.base import MethodOptions

__all__ = ["LoraOptions", "PromptOptions"]


class LoraOptions(MethodOptions):
    """lora and adalora."""

    lora_r: int | None = Field(None, ge=1, le=1024, description="lora/adalora: rank of the low-rank update "
                               "(adalora: the average rank it prunes to); default 4 for encoders, 16 for a chat "
                               "model (generation).")
    lora_alpha: int | None = Field(None, ge=1, description="lora/adalora: scaling of the update (alpha / r); "
                                   "default 16 for encoders, 32 for a chat model.")
    lora_dropout: float | None = Field(None, ge=0, lt=1, description="lora/adalora: dropout on the adapter's "
                                       "input; default 0.1 for encoders, 0.05 for a chat model.")
    lora_target_modules: list[str] | None = Field(
        None, description="lora/adalora: names of the layers to adapt (default: every linear layer of a BERT-like "
                          "encoder block, query, key, value, attention.output.dense, intermediate.dense and "
                          "output.dense; every linear layer of a chat model's decoder; else peft's choice for the "
                          "architecture).")


class PromptOptions(MethodOptions):
    """prompt_tuning and p_tuning."""

    num_virtual_tokens: int = Field(20, ge=1, le=512, description="prompt_tuning/p_tuning: virtual tokens.")
