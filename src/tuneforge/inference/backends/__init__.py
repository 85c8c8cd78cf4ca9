"""Serving backends by name: ``get_backend("torch")``.

A backend is registered with a factory that builds it (importing its optional dependencies only then), so adding
one is a module with the backend class plus one :func:`register_backend` call below (or in the module that
defines it)::

    register_backend("onnx", lambda: importlib.import_module("tuneforge.inference.backends.onnx").OnnxBackend())
"""

from __future__ import annotations

from collections.abc import Callable

from tuneforge.errors import ConfigError
from tuneforge.inference.backends.base import Backend, LoadedModel

__all__ = ["Backend", "LoadedModel", "backend_names", "get_backend", "register_backend"]

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


def _torch() -> Backend:
    from tuneforge.inference.backends.torch import TorchBackend

    return TorchBackend()


register_backend("torch", _torch)
