"""PyTorch eager inference: ``torch`` (fp32, the default) and ``torch-bf16`` (bfloat16 autocast, where the CPU has
bf16 instructions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.inference.backends.base import LoadedModel, ServedPredictor
from tuneforge.models.tensors import model_nbytes

__all__ = ["TorchBackend", "TorchPredictor", "bf16_supported"]

#: CPU flags of instructions that compute in bfloat16 (AVX-512 BF16, AMX); without them bf16 is emulated, slower
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def bf16_supported() -> bool:
    """Whether this CPU computes in bfloat16 natively (oneDNN's own test where torch has it, else the CPU flags)."""
    import torch

    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is not None and torch.backends.mkldnn.is_available():
        try:
            return bool(probe())
        except RuntimeError:  # pragma: no cover - a build without the op
            pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:  # pragma: no cover - not Linux
        return False
    return any(flag in flags for flag in _BF16_FLAGS)


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


class TorchPredictor(ServedPredictor):
    """A loaded run (a :class:`~tuneforge.inference.Predictor`, or an ensemble with the same interface) served as
    a :class:`LoadedModel`: predictions as users see them, tokens as the task counts them."""

    def __init__(self, predictor: Any, *, backend: str = "torch") -> None:
        self.predictor = predictor
        self.task = self.predictor.task.name
        self.nbytes = model_nbytes(self.predictor.model)
        #: what serves it, for /v1/models/{id} and the console
        self.backend_info: dict[str, Any] = {"backend": backend, "intra_op_threads": _threads()}


class TorchBackend:
    """PyTorch eager inference, in fp32 or (``bf16``) under bfloat16 autocast."""

    def __init__(self, *, bf16: bool = False) -> None:
        self.bf16 = bf16
        self.name = "torch-bf16" if bf16 else "torch"
        if bf16 and not bf16_supported():
            raise ConfigError("backend: torch-bf16 needs a CPU with bfloat16 instructions (AVX-512 BF16 or AMX); "
                              "this one would emulate them, slower than fp32",
                              hint="use --backend torch, onnx or onnx-int8")

    def load_predictor(self, path: Path) -> LoadedModel:
        from tuneforge.inference.predictor import load_predictor

        return TorchPredictor(load_predictor(path, bf16=self.bf16), backend=self.name)

    def load_embedder(self, path: Path) -> LoadedModel:
        from tuneforge.inference.embeddings import load_embedder

        embedder = load_embedder(path)
        # the embedder computes in fp32 (bf16 autocast is for the task heads' predictions)
        setattr(embedder, "backend_info", {"backend": "torch", "intra_op_threads": _threads()})  # noqa: B010
        return embedder
