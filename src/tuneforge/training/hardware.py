"""What the machine supports: used to pick bf16 autocast and thread counts."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

__all__ = ["bf16_supported", "cpu_model", "hardware_summary", "use_bf16"]


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it ("" where there is none)."""
    return next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
                 if line.startswith("model name")), "")


@functools.cache
def bf16_supported() -> bool:
    """True on a CUDA device with bf16, or a CPU with native bf16 instructions (AVX512-BF16 or AMX)."""
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    flags = _cpuinfo()
    return " avx512_bf16" in flags or " amx_bf16" in flags


def use_bf16(precision: str) -> bool:
    return precision == "bf16" or (precision == "auto" and bf16_supported())


def hardware_summary() -> dict[str, object]:
    """What trained the run, for its manifest and model card: the device kind, its name and count, CPU threads."""
    if torch.cuda.is_available():
        return {"device": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                "cpu_threads": torch.get_num_threads()}
    return {"device": "cpu", "name": cpu_model() or "unknown", "count": 1, "cpu_threads": torch.get_num_threads()}
