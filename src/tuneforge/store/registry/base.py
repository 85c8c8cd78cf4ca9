"""The model registry's vocabulary: :class:`ModelVersion`, the :class:`Registry` protocol both registries
implement (the offline folder, :mod:`.local`, and the service's tenant-scoped tables, :mod:`.service`),
``name@ref`` parsing and the checks and messages they share.

A model *name* (``sst``) has numbered *versions* (1, 2, ...; a number is never reused, even after a delete), each
an immutable copy of a run folder, and *aliases* (``production``, ``candidate``, any user name) pointing at one
version each. Every change is kept in the name's history (who, when, what, why, and the metrics at the time).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from tuneforge.errors import ConflictError, InvalidRequestError, NotFoundError, RunError
from tuneforge.settings import Settings

__all__ = ["LATEST", "PRODUCTION", "ModelVersion", "Registry", "as_registry_ref", "check_alias", "check_name",
           "default_registry_root", "parse_model_ref", "read_run_metrics", "require_dir", "resolve_ref"]

PRODUCTION = "production"
#: a pseudo-alias every name has: its highest version (it cannot be set)
LATEST = "latest"
#: the environment variable naming the offline registry's folder (default: ``<data_dir>/registry``)
ENV_DIR = "TUNEFORGE_REGISTRY_DIR"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
# the evaluation reports in a run folder (tuneforge.evaluation.report writes them)
_EVAL_GLOB = "eval-*"
_EVAL_METRICS = "metrics.json"


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model name."""

    name: str
    version: int
    #: local path of the immutable copy of the run folder (serve, predict or evaluate it)
    run_dir: Path
    #: the aliases pointing at it now
    aliases: tuple[str, ...]
    created_at: datetime
    created_by: str
    #: metrics at registration (from the run's manifest and dev reports, or given)
    metrics: dict[str, Any]
    #: where it came from (a run folder's path, a job's model id, "retrain of v2" ...)
    source: str
    #: a copy of the training file kept with the version (for replay), when known
    train_data: Path | None
    #: the version it was fine-tuned from, if any
    parent: int | None

    @property
    def ref(self) -> str:
        """``name@version``, the reference that always means this version."""
        return f"{self.name}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "run_dir": str(self.run_dir),
                "aliases": list(self.aliases), "created_at": self.created_at.isoformat(),
                "created_by": self.created_by, "metrics": self.metrics, "source": self.source,
                "train_data": str(self.train_data) if self.train_data else None, "parent": self.parent}


class Registry(Protocol):
    """Versions and aliases of model names; every change is audited (``history``)."""

    def register(self, name: str, run_dir: Path, *, actor: str, reason: str = "",
                 metrics: dict[str, Any] | None = None, train_data: Path | None = None,
                 parent: int | None = None, source: str | None = None) -> ModelVersion:
        """Copy the finished run folder ``run_dir`` in as the name's next version (the name is created on first
        use). ``metrics`` default to the scalars of the run's evaluation reports (:func:`read_run_metrics`);
        ``train_data`` is copied in with it (the caller knows it: the manifest's training file, a job's upload);
        ``source`` says where it came from (default: ``run_dir``'s path)."""
        ...

    def versions(self, name: str) -> list[ModelVersion]:
        """Oldest first; :class:`NotFoundError` for an unknown name."""
        ...

    def names(self) -> list[str]: ...

    def get(self, name: str, ref: str | int | None = None) -> ModelVersion:
        """``ref``: an alias, a version number (``3`` or ``"3"``), ``"latest"``, or None for ``production``;
        :class:`NotFoundError` naming the choices."""
        ...

    def set_alias(self, name: str, alias: str, version: int, *, actor: str, reason: str = "",
                  metrics: dict[str, Any] | None = None) -> None: ...

    def remove_alias(self, name: str, alias: str, *, actor: str, reason: str = "") -> None: ...

    def rollback(self, name: str, alias: str = PRODUCTION, *, actor: str, reason: str = "") -> ModelVersion:
        """Point ``alias`` back at the version it pointed at before its last move (again: the one before that)."""
        ...

    def delete_version(self, name: str, version: int, *, actor: str, reason: str = "") -> None:
        """Delete a version and its files; refused (:class:`ConflictError`) while an alias points at it."""
        ...

    def set_test_data(self, name: str, path: Path) -> Path:
        """Keep a copy of ``path`` as the name's fixed test set; returns the copy's path."""
        ...

    def test_data(self, name: str) -> Path | None: ...

    def history(self, name: str) -> list[dict[str, Any]]:
        """The audit log, oldest first: ``at``, ``actor``, ``action``, ``alias``, ``version``, ``previous``,
        ``reason``, ``metrics``."""
        ...


def parse_model_ref(text: str) -> tuple[str, str | None]:
    """``"sst@production"`` -> ``("sst", "production")``; ``"sst@3"`` -> ``("sst", "3")``; ``"sst"`` ->
    ``("sst", None)``."""
    name, sep, ref = text.strip().rpartition("@")
    if not sep:
        return ref, None
    if not name or not ref:
        raise InvalidRequestError(f"model: '{text}' is not a model reference; write NAME, NAME@ALIAS or "
                                  "NAME@VERSION (sst, sst@production, sst@3).", param="model",
                                  code="invalid_model_ref")
    return name, ref


def as_registry_ref(text: str) -> tuple[str, str | None] | None:
    """``parse_model_ref(text)`` when ``text`` can name a registry model (``sst``, ``sst@production``,
    ``sst@3``), None otherwise (a fine-tuned model's ``ft:...`` id, a base model with a path ...)."""
    name, sep, ref = text.strip().rpartition("@")
    if not sep:
        name, ref = ref, ""
    if not _NAME.match(name) or (sep and not (ref.isdigit() or _ALIAS.match(ref))):
        return None
    return name, ref or None


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidRequestError(f"name: '{name}' is not a registry name; use 1-64 letters, digits, '.', '_' or "
                                  "'-', starting with a letter or digit (for example sst or support-intents).",
                                  param="name", code="invalid_name")
    return name


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias) or alias == LATEST:
        raise InvalidRequestError(f"alias: '{alias}' cannot be an alias; use 1-32 letters, digits, '_' or '-', "
                                  f"starting with a letter (for example production or candidate; '{LATEST}' is "
                                  "taken: it always means the highest version).", param="alias",
                                  code="invalid_alias")
    return alias


def resolve_ref(name: str, ref: str | int | None, versions: list[int], aliases: dict[str, int]) -> int:
    """The version ``ref`` names among ``versions`` (ascending) and ``aliases``; :class:`NotFoundError` naming
    the choices."""
    def choices() -> str:
        al = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
        return f"versions: {', '.join(map(str, versions)) or 'none'}; aliases: {al}"

    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        v = int(ref)
        if v in versions:
            return v
        raise NotFoundError(f"{name} has no version {v} ({choices()}).", param="model", code="model_not_found")
    alias = ref or PRODUCTION
    if alias == LATEST and versions:
        return versions[-1]
    if alias in aliases:
        return aliases[alias]
    hint = (f" Promote a version first: tuneforge registry promote {name} VERSION --alias {alias}"
            if alias == PRODUCTION else "")
    raise NotFoundError(f"{name} has no alias '{alias}' ({choices()}).{hint}", param="model",
                        code="model_not_found")


def unknown_name(name: str, names: list[str]) -> NotFoundError:
    known = ", ".join(names[:20]) or "none yet"
    return NotFoundError(f"No model named '{name}' in the registry (names: {known}).", param="model",
                         code="model_not_found",
                         hint=f"Register a run first: tuneforge registry promote {name} RUN_FOLDER --alias production")


def aliased_conflict(name: str, version: int, aliases: list[str]) -> ConflictError:
    return ConflictError(f"{name} version {version} is still the target of alias(es) {', '.join(sorted(aliases))}; "
                         "move or remove them first (tuneforge registry alias NAME ALIAS VERSION / --remove).",
                         code="version_in_use", param="version")


def nothing_to_roll_back(name: str, alias: str) -> InvalidRequestError:
    return InvalidRequestError(f"{name}@{alias} has no earlier target to roll back to.", param="alias",
                               code="nothing_to_roll_back")


def read_run_metrics(run_dir: Path) -> dict[str, Any]:
    """The scalar metrics of each evaluation report in a run folder (``eval-<file>/metrics.json``, the dev report
    that training writes and those ``tuneforge evaluate`` adds), as ``{"eval-<file>": {...}}``."""
    metrics: dict[str, Any] = {}
    for d in sorted(run_dir.glob(_EVAL_GLOB)):
        try:
            scores = json.loads((d / _EVAL_METRICS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(scores, dict):
            metrics[d.name] = {k: v for k, v in scores.items() if isinstance(v, int | float | str | bool)}
    return metrics


def require_dir(run_dir: Path) -> Path:
    """``run_dir`` if it is a folder. (Whether it is a finished run is for the caller to check with
    :mod:`tuneforge.runs`, which the store does not import.)"""
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a folder.", hint="Register a folder that `tuneforge train --output` "
                                                           "finished.")
    return run_dir


def default_registry_root(settings: Settings | None = None) -> Path:
    """The offline registry's folder: ``$TUNEFORGE_REGISTRY_DIR``, else ``<data_dir>/registry``."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return (settings or Settings()).data_dir / "registry"


def version_of(name: str, version: int | str) -> int:
    try:
        v = int(version)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"version: '{version}' is not a version number of {name}.", param="version",
                                  code="invalid_version") from None
    if v < 1:
        raise InvalidRequestError(f"version: {v}; versions start at 1.", param="version", code="invalid_version")
    return v
