"""The serving pieces: the micro-batcher groups concurrent requests into one call and splits the results back;
the model cache stays within its memory budget, least recently used first; backends are chosen by name."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tuneforge.errors import ConfigError, DataError
from tuneforge.inference.backends import backend_names, get_backend, register_backend
from tuneforge.inference.backends.torch import TorchBackend
from tuneforge.inference.batching import MicroBatcher
from tuneforge.inference.serving import InferenceService, ModelCache


def test_concurrent_requests_share_calls_and_get_their_own_results():
    calls: list[list[int]] = []
    gate = threading.Event()

    def double(items: list[int]) -> list[int]:
        calls.append(list(items))
        gate.wait(5)  # the first call holds until every request is queued behind it
        return [2 * x for x in items]

    b = MicroBatcher(double, max_items=64, max_wait_s=0.001)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(b.submit, [i, 100 + i]) for i in range(16)]
        deadline = time.monotonic() + 10
        # the first call holds some requests; wait until all the others are queued behind it
        while not (calls and len(calls[0]) // 2 + b._q.qsize() == 16):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gate.set()
        results = [f.result(timeout=10) for f in futures]
    b.close()
    assert results == [[2 * i, 200 + 2 * i] for i in range(16)]
    # the requests waiting behind the first call ran as one batch (on a busy machine all 16 may already be queued
    # when the first call starts, and then there is just that one)
    assert len(calls) in (1, 2) and sum(len(c) for c in calls) == 32


def test_a_batch_never_exceeds_max_items_and_errors_reach_every_caller():
    sizes: list[int] = []

    def fn(items: list[Any]) -> list[Any]:
        sizes.append(len(items))
        if "boom" in items:
            raise ValueError("boom")
        return items

    b = MicroBatcher(fn, max_items=4, max_wait_s=0.01)
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda i: b.submit([i, i]), range(8)))
    assert out == [[i, i] for i in range(8)] and max(sizes) <= 4
    with pytest.raises(ValueError, match="boom"):
        b.submit(["boom"])
    assert b.submit(["ok"]) == ["ok"]  # the batcher survives a failed batch
    b.close()


class _Fake:
    task = "classification"

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def prepare(self, inputs: list[Any]) -> list[Any]:
        if any(not isinstance(x, str) for x in inputs):
            from tuneforge.errors import DataProblem

            raise DataError([DataProblem("input", None, "text", "not a string")])
        return list(inputs)

    def run(self, items: list[Any]) -> list[Any]:
        return [{"label": x.upper()} for x in items]

    def count_tokens(self, items: list[Any]) -> int:
        return sum(len(x) for x in items)


def test_the_cache_unloads_least_recently_used_models_past_its_budget():
    loads: list[str] = []

    def loader(key: str, size: int):
        def load():
            loads.append(key)
            return _Fake(size)

        return load

    cache = ModelCache(100, make_batcher=lambda k, m: MicroBatcher(m.run))
    cache.get("a", loader("a", 40))
    cache.get("b", loader("b", 40))
    cache.get("a", loader("a", 40))  # a is now the most recent
    cache.get("c", loader("c", 40))  # over budget: b goes
    assert sorted(cache.keys()) == ["a", "c"] and cache.used_bytes == 80
    cache.get("huge", loader("huge", 500))  # larger than the budget: served alone
    assert cache.keys() == ["huge"]
    assert loads == ["a", "b", "c", "huge"]
    cache.close()


def test_one_load_for_many_concurrent_first_requests():
    loads: list[int] = []

    class Backend:
        def load_predictor(self, path: Any) -> _Fake:
            loads.append(1)
            return _Fake(10)

        load_embedder = load_predictor

    svc = InferenceService(capacity_bytes=1000, backend=Backend())  # type: ignore[arg-type]
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda t: svc.predict("m", None, [t]), ["a", "b", "c", "d"] * 4))  # type: ignore[arg-type]
    assert len(loads) == 1
    assert [o[0][0]["label"] for o in out] == ["A", "B", "C", "D"] * 4 and out[0][1] == 1
    with pytest.raises(DataError):  # a bad request fails alone, before it joins a batch
        svc.predict("m", None, [3])  # type: ignore[arg-type, list-item]
    svc.close()


def test_an_unloaded_model_stops_its_batcher():
    cache = ModelCache(100, make_batcher=lambda k, m: MicroBatcher(m.run))
    a = cache.get("a", lambda: _Fake(60))
    assert a.batcher.submit(["x"]) == [{"label": "X"}]
    cache.get("b", lambda: _Fake(60))  # over budget: a is unloaded and its batcher closed
    with pytest.raises(RuntimeError, match="unloaded"):
        a.batcher.submit(["x"])
    b = cache.get("b", lambda: _Fake(60))
    cache.evict("b")
    assert cache.keys() == [] and cache.used_bytes == 0
    with pytest.raises(RuntimeError, match="unloaded"):
        b.batcher.submit(["x"])


def test_backends_are_chosen_by_name():
    assert "torch" in backend_names() and isinstance(get_backend("torch"), TorchBackend)
    with pytest.raises(ConfigError, match=r"unknown inference backend 'onnx-int4'.*choose one of: .*torch"):
        get_backend("onnx-int4")
    with pytest.raises(ConfigError, match="onnx-int4"):
        InferenceService(capacity_bytes=1000, backend="onnx-int4")

    loaded: list[tuple[str, Any]] = []

    class Fake:
        def load_predictor(self, path: Any) -> _Fake:
            loaded.append(("predict", path))
            return _Fake(10)

        def load_embedder(self, path: Any) -> _Fake:
            loaded.append(("embed", path))
            return _Fake(10)

    register_backend("test-fake", Fake)
    svc = InferenceService(capacity_bytes=1000, backend="test-fake")
    assert svc.predict("m", "run-folder", ["hi"]) == ([{"label": "HI"}], 2)  # type: ignore[arg-type]
    assert svc.embed("m", "encoder-folder", ["hi"])[1] == 2  # type: ignore[arg-type]
    svc.unload("m")
    assert svc.cache.keys() == []
    svc.close()
    assert loaded == [("predict", "run-folder"), ("embed", "encoder-folder")]


def test_a_models_tokenizer_is_used_by_one_thread_only():
    """A fast tokenizer is not thread-safe: a request thread counting tokens while the batcher thread encodes a
    batch switched that batch's truncation off (a 500 under load). Counting happens in the batcher's thread."""
    threads: dict[str, set[str]] = {"run": set(), "count_tokens": set()}

    class Recording(_Fake):
        def run(self, items: list[Any]) -> list[Any]:
            threads["run"].add(threading.current_thread().name)
            return super().run(items)

        def count_tokens(self, items: list[Any]) -> int:
            threads["count_tokens"].add(threading.current_thread().name)
            return super().count_tokens(items)

    class Backend:
        def load_predictor(self, path: Any) -> _Fake:
            return Recording(10)

        load_embedder = load_predictor

    svc = InferenceService(capacity_bytes=1000, backend=Backend())  # type: ignore[arg-type]
    try:
        with ThreadPoolExecutor(8, thread_name_prefix="request") as pool:
            out = list(pool.map(lambda i: svc.predict("m", "run", ["ab", "c" * i]), range(1, 17)))
            emb = list(pool.map(lambda i: svc.embed("m", "enc", ["x" * i]), range(1, 9)))
    finally:
        svc.close()
    assert out == [([{"label": "AB"}, {"label": "C" * i}], 2 + i) for i in range(1, 17)]  # per request, as before
    assert [n for _, n in emb] == list(range(1, 9))
    assert len(threads["run"]) == 2 and threads["count_tokens"] == threads["run"]  # the two batchers' threads


def test_a_large_request_does_not_hold_the_batcher_for_its_whole_length():
    """A request of many inputs runs max_items at a time; a small request sent meanwhile is answered between its
    parts, long before the large one ends."""
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    class Slow(_Fake):
        def run(self, items: list[Any]) -> list[Any]:
            calls.append(len(items))
            if len(calls) == 1:
                started.set()
                release.wait(10)  # the large request's first part holds until the small one is queued
            return super().run(items)

    class Backend:
        def load_predictor(self, path: Any) -> _Fake:
            return Slow(10)

        load_embedder = load_predictor

    svc = InferenceService(capacity_bytes=1000, max_items=4, backend=Backend())  # type: ignore[arg-type]
    try:
        with ThreadPoolExecutor(2) as pool:
            large = pool.submit(svc.predict, "m", "run", [f"x{i}" for i in range(10)])
            assert started.wait(10)
            small = pool.submit(svc.predict, "m", "run", ["hi"])
            deadline = time.monotonic() + 10
            while svc.cache.get("predict:m", lambda: None).batcher._q.qsize() < 1:  # type: ignore[arg-type, return-value]
                assert time.monotonic() < deadline
                time.sleep(0.01)
            release.set()
            assert small.result(10) == ([{"label": "HI"}], 2)
            preds, tokens = large.result(10)
    finally:
        svc.close()
    assert [p["label"] for p in preds] == [f"X{i}" for i in range(10)] and tokens == 20
    assert calls[:2] == [4, 1] and sum(calls) == 11 and max(calls) <= 4  # the small one ran after the first part
