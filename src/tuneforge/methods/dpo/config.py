"""The options of DPO, read from the run configuration (flat keys: ``dpo_beta: 0.1`` in YAML, ``--dpo-beta 0.1`` on
the command line). DPO trains a LoRA adapter by default, so it reads the LoRA options too."""

from __future__ import annotations

from pydantic import Field

from tuneforge.methods.peft.config import LoraOptions

__all__ = ["DpoOptions"]


class DpoOptions(LoraOptions):
    """dpo (plus lora_r, lora_alpha, lora_target_modules for its adapter)."""

    dpo_beta: float = Field(0.1, gt=0, le=10, description="dpo: strength of the pull towards the reference model "
                                                          "(the implicit reward is beta x the log-probability "
                                                          "ratio; smaller moves further from the reference).")
    dpo_full: bool = Field(False, description="dpo: train every weight against a frozen copy of the starting model "
                                              "(twice the memory) instead of a LoRA adapter whose reference is the "
                                              "model with the adapter disabled.")
