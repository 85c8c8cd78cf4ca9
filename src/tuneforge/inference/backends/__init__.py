"""Serving backends by name: ``get_backend("torch")``.

A backend is registered with a factory that builds it (importing its optional dependencies only then), so adding
one is a module with the backend class plus one :func:`register_backend` call below (or in the module that
defines it)::

    register_backend("onnx", lambda: importlib.import_module("tuneforge.inference.backends.onnx").OnnxBackend())
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.inference.backends.base import Backend, LoadedModel

__all__ = ["Backend", "LoadedModel", "backend_names", "get_backend", "load_run_predictor", "register_backend"]

_BACKENDS: dict[str, Callable[[], Backend]] = {}


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Make ``get_backend(name)`` build a backend with ``factory`` (a later registration of a name replaces it)."""
    _BACKENDS[name] = factory


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str) -> Backend:
    """A new backend of the registered ``name``; a :class:`ConfigError` naming the choices otherwise."""
    try:
        factory = _BACKENDS[name]
    except KeyError:
        raise ConfigError(f"backend: unknown inference backend '{name}' (choose one of: "
                          f"{', '.join(backend_names())})") from None
    return factory()


def _torch(*, bf16: bool = False) -> Backend:
    from tuneforge.inference.backends.torch import TorchBackend

    return TorchBackend(bf16=bf16)


def _onnx(*, int8: bool = False) -> Backend:
    from tuneforge.inference.backends.onnx import OnnxBackend

    return OnnxBackend(int8=int8)


def _auto() -> Backend:
    from tuneforge.inference.backends.auto import AutoBackend

    return AutoBackend()


def load_run_predictor(path: Any, backend: str = "torch") -> Any:
    """The predictor of a run folder (or of an ONNX export folder) as ``backend`` runs it: the object with the
    :class:`~tuneforge.inference.Predictor` interface that ``predict`` and ``evaluate`` use, so what they measure
    is what the service serves with that backend."""
    from pathlib import Path

    return get_backend(backend).load_predictor(Path(path)).predictor  # type: ignore[attr-defined]


register_backend("torch", _torch)
register_backend("torch-bf16", lambda: _torch(bf16=True))
register_backend("onnx", _onnx)
register_backend("onnx-int8", lambda: _onnx(int8=True))
register_backend("auto", _auto)
