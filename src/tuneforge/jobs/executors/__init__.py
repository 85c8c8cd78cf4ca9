"""Executors run a job's work away from the worker's loop, chosen by name (``TUNEFORGE_EXECUTOR``, ``tuneforge
worker --executor``).

An :class:`Executor` starts a run and returns a :class:`RunHandle` the worker polls: drain its events, ask it to
stop (cancel, pause), kill it (its lease was lost), read its result (see :mod:`.base`). Two ship:

* ``process`` (:class:`ProcessExecutor`, the default): one child process per run (:mod:`.process`).
* ``thread`` (:class:`ThreadExecutor`): a thread in the worker process, for tests and debugging (:mod:`.thread`).
* ``ray``: a Ray actor on a cluster per run (:mod:`.ray`, imported when chosen; the ``ray`` extra).

Another executor is one more module here and one :func:`register_executor` call below. Registering it by its
``"module:Class"`` path keeps an optional dependency (Ray, say) unimported until that executor is chosen.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.jobs.executors.base import Executor, RunHandle, Runner, resolve_runner
from tuneforge.jobs.executors.process import ProcessExecutor
from tuneforge.jobs.executors.thread import ThreadExecutor

__all__ = ["Executor", "ProcessExecutor", "RunHandle", "Runner", "ThreadExecutor", "executor_names",
           "make_executor", "register_executor", "resolve_runner"]

ExecutorFactory = Callable[..., Executor]

_EXECUTORS: dict[str, ExecutorFactory | str] = {}


def register_executor(name: str, factory: ExecutorFactory | str) -> None:
    """Make ``name`` an executor: ``factory(**options)`` builds it, or ``factory`` is the ``"module:Class"`` path
    of one, imported when it is first chosen."""
    if not name.isidentifier():
        raise ValueError(f"an executor name is an identifier, not {name!r}")
    if _EXECUTORS.get(name, factory) != factory:
        raise ValueError(f"an executor named '{name}' is already registered")
    _EXECUTORS[name] = factory


def executor_names() -> tuple[str, ...]:
    return tuple(sorted(_EXECUTORS))


def make_executor(name: str, **options: Any) -> Executor:
    """A new executor of the kind registered as ``name``; :class:`ConfigError` names the choices otherwise."""
    factory = _EXECUTORS.get(name)
    if factory is None:
        raise ConfigError(f"executor: '{name}' is not an executor (choose one of: {', '.join(executor_names())})",
                          hint="Set TUNEFORGE_EXECUTOR or `tuneforge worker --executor` to one of them.")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(**options)


register_executor("process", ProcessExecutor)
register_executor("thread", ThreadExecutor)
register_executor("ray", "tuneforge.jobs.executors.ray:RayExecutor")  # a Ray actor per run (docs/ray.md)
