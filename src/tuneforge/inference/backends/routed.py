"""A server's backends: one for every model (``TUNEFORGE_BACKEND`` / ``tuneforge serve --backend``) and per-model
overrides (``TUNEFORGE_MODEL_BACKENDS='{"NAME": "onnx-int8"}'``), where NAME is a model's run name (the ``name``
in its ``tuneforge.json``: the folder it was trained into) or the name of the folder it is served from."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.inference.backends.base import Backend, LoadedModel

__all__ = ["RoutedBackend", "make_backend"]


class RoutedBackend:
    """``default`` for every model, ``overrides`` (name -> backend name) for the models they name."""

    def __init__(self, default: str, overrides: Mapping[str, str]) -> None:
        from tuneforge.inference.backends import get_backend

        self.name = default
        self._backends: dict[str, Backend] = {}
        problems = []
        for name in {default, *overrides.values()}:
            try:
                self._backends[name] = get_backend(name)
            except ConfigError as e:
                problems.append(e.message)
        if problems:
            raise ConfigError(problems, hint="fix TUNEFORGE_BACKEND / TUNEFORGE_MODEL_BACKENDS (or --backend)")
        self.default, self.overrides = default, dict(overrides)
        #: what served each model folder loaded so far (its ``backend_info``), by resolved path: /v1/models/{id}
        self.loaded: dict[str, dict[str, Any]] = {}

    def backend_for(self, path: Path) -> tuple[str, str | None]:
        """The backend name that serves the model in ``path``, and the override's key that chose it (if any)."""
        names = [Path(path).name]
        from tuneforge.runs import MANIFEST

        manifest = Path(path) / MANIFEST
        if self.overrides and manifest.is_file():
            try:
                name = json.loads(manifest.read_text(encoding="utf-8")).get("name")
            except (OSError, ValueError):
                name = None
            if isinstance(name, str):
                names.insert(0, name)
        for key in names:
            if key in self.overrides:
                return self.overrides[key], key
        return self.default, None

    def _load(self, path: Path, embed: bool) -> LoadedModel:
        name, key = self.backend_for(path)
        backend = self._backends[name]
        model = backend.load_embedder(path) if embed else backend.load_predictor(path)
        info: dict[str, Any] = dict(getattr(model, "backend_info", None) or {"backend": name})
        if key is not None:
            info["override"] = key
        setattr(model, "backend_info", info)  # noqa: B010
        self.loaded[str(Path(path).resolve())] = info
        return model

    def info(self, path: Path) -> dict[str, Any] | None:
        """The ``backend_info`` of the model last loaded from ``path``; None if it has not been loaded."""
        return self.loaded.get(str(Path(path).resolve()))

    def load_predictor(self, path: Path) -> LoadedModel:
        return self._load(path, embed=False)

    def load_embedder(self, path: Path) -> LoadedModel:
        return self._load(path, embed=True)


def make_backend(default: str = "torch", overrides: Mapping[str, str] | None = None) -> Backend:
    """The backend a server serves with: ``default``, routed by ``overrides``, recording what served each model."""
    return RoutedBackend(default, overrides or {})
