"""The options of bottleneck adapters, read from the run configuration (``adapter_size: 64``, ``--adapter-size``)."""

from __future__ import annotations

from pydantic import Field

from tuneforge.methods.base import MethodOptions

__all__ = ["AdapterOptions"]


class AdapterOptions(MethodOptions):
    adapter_size: int = Field(64, ge=1, le=4096, description="adapter: bottleneck width of each adapter.")
