"""The options of zero-shot classification (shared by setfit, which starts from the same label texts), read from
the run configuration (``label_template: ...``, ``--label-template``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.methods.base import MethodOptions

__all__ = ["ZeroShotOptions"]


class ZeroShotOptions(MethodOptions):
    sentence_encoder: Literal["auto", "base"] = Field(
        "auto", description="setfit/zeroshot: auto uses all-mpnet-base-v2 instead of minilm when installed "
                            "(much better from few examples); base keeps --base-model.")
    label_template: str = Field("This text is {label}.", description="setfit/zeroshot: text of a label without a "
                                                                        "description ({label} is its name).")
    label_descriptions: dict[str, str] | None = Field(
        None, description="setfit/zeroshot: a description per label (e.g. positive: 'a great, enjoyable film').")
