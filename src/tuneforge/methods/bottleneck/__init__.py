"""Bottleneck adapters (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP").

The ``adapters`` library pins transformers 4.57 and will not install beside 5.x, so this is our own small method:
a down-projection, a non-linearity and an up-projection with a residual, after the attention and the feed-forward
sublayer of every layer, initialised near identity; only the adapters, the layer norms and the task head train.
"""

from tuneforge.methods.base import register_method
from tuneforge.methods.bottleneck.layer import AdaptedLinear, Adapter, insert_adapters
from tuneforge.methods.bottleneck.method import BottleneckAdapters

METHOD = register_method(BottleneckAdapters())

__all__ = ["METHOD", "AdaptedLinear", "Adapter", "BottleneckAdapters", "insert_adapters"]
