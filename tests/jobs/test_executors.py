"""Executors are chosen by name from a registry: an unknown name is a ConfigError that lists the choices, and a
new executor is one module plus one register call (imported only when chosen)."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from tests.service_support import make_settings
from tuneforge.errors import ConfigError
from tuneforge.jobs import executors
from tuneforge.jobs.executors import (
    ProcessExecutor,
    ThreadExecutor,
    executor_names,
    make_executor,
    register_executor,
)
from tuneforge.jobs.worker import Worker
from tuneforge.store.db import make_engine, make_session_factory
from tuneforge.store.storage import LocalStorage


class RecordingExecutor:
    """An executor from outside the package: runs nothing, remembers its options."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def start(self, runner: str, spec: Any) -> Any:
        raise NotImplementedError


@pytest.fixture
def registry(monkeypatch):
    """The registry, restored after the test."""
    monkeypatch.setattr(executors, "_EXECUTORS", dict(executors._EXECUTORS))


def test_the_shipped_executors_are_registered_by_name():
    assert executor_names() == ("process", "ray", "thread")
    assert isinstance(make_executor("process"), ProcessExecutor)
    assert isinstance(make_executor("thread"), ThreadExecutor)


@pytest.mark.parametrize("name", ["rays", "threads", "", "Process"])
def test_an_unknown_executor_name_is_a_config_error_naming_the_choices(name):
    with pytest.raises(ConfigError) as e:
        make_executor(name)
    assert e.value.problems == [f"executor: '{name}' is not an executor (choose one of: process, ray, thread)"]
    assert "TUNEFORGE_EXECUTOR" in str(e.value)


def test_a_worker_refuses_an_unknown_executor_setting(tmp_path):
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", executor="nope")
    engine = make_engine(settings.db_url)
    try:
        with pytest.raises(ConfigError, match="'nope' is not an executor"):
            Worker(sessions=make_session_factory(engine), settings=settings, storage=LocalStorage(tmp_path))
        w = Worker(sessions=make_session_factory(engine), settings=settings.model_copy(update={"executor": "thread"}),
                   storage=LocalStorage(tmp_path))
        assert isinstance(w.executor, ThreadExecutor)
    finally:
        engine.dispose()


def test_the_app_refuses_an_unknown_executor_before_it_starts(tmp_path):
    from tuneforge.api import create_app

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", executor="nope", embedded_workers=1)
    with pytest.raises(ConfigError, match="choose one of: process, ray, thread"):
        create_app(settings)
    create_app(settings.model_copy(update={"embedded_workers": 0}))  # no worker in the server: nothing to choose


def test_a_new_executor_is_one_register_call_and_is_imported_only_when_chosen(registry):
    module = __name__
    register_executor("recording", f"{module}:RecordingExecutor")
    assert executor_names() == ("process", "ray", "recording", "thread")
    ex = make_executor("recording", address="ray://head:10001")
    assert isinstance(ex, sys.modules[module].RecordingExecutor) and ex.options == {"address": "ray://head:10001"}
    register_executor("recording", f"{module}:RecordingExecutor")  # the same registration again is harmless
    with pytest.raises(ValueError, match="already registered"):
        register_executor("recording", ThreadExecutor)
    with pytest.raises(ValueError, match="identifier"):
        register_executor("my executor", ThreadExecutor)


def test_a_lazily_registered_executor_module_is_not_imported_until_chosen(registry, tmp_path, monkeypatch):
    (tmp_path / "tf_lazy_executor.py").write_text(
        "class LazyExecutor:\n    def start(self, runner, spec):\n        raise NotImplementedError\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_executor("lazy", "tf_lazy_executor:LazyExecutor")
    assert "tf_lazy_executor" not in sys.modules
    assert type(make_executor("lazy")).__name__ == "LazyExecutor"
    assert "tf_lazy_executor" in sys.modules
    monkeypatch.delitem(sys.modules, "tf_lazy_executor")


def test_the_thread_executor_reports_a_runner_crash_as_a_result():
    handle = make_executor("thread").start("tests.jobs.test_executors:_boom", None)
    deadline = time.monotonic() + 10
    while not handle.done():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert handle.result() == {"status": "crashed", "message": "RuntimeError: out of cheese"}


def _boom(spec: Any, emit: Any, should_stop: Any) -> dict[str, Any]:
    raise RuntimeError("out of cheese")
