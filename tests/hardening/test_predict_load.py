"""Issue 17, item 2: one maximal /v1/predict request does not stall the server. Token counting never tokenizes a
whole huge input, and while a maximal request is in its forward passes, /healthz and another tenant's small
request are answered (the route runs in the thread pool, not on the event loop)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from tests.conftest import RecordingTokenizer
from tests.service_support import install_model, new_tenant, serve
from tuneforge.api import create_app
from tuneforge.inference.backends.torch import TorchPredictor
from tuneforge.tasks import get_task


@pytest.fixture(scope="module")
def tokenizer(tiny_bert) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert))


def _full_count(task: Any, examples: list[dict], tok: Any, cap: int) -> int:
    enc = task._tokenize_for_count(examples, tok)  # the count of before: whole inputs tokenized
    return sum(min(len(ids), cap) for ids in enc["input_ids"])


def test_token_counts_tokenize_a_bounded_prefix_and_stay_exact(tokenizer) -> None:
    huge = "a good movie " * 20_000  # 260,000 characters
    cases = {
        "classification": [{"text": huge}, {"text": "short one"}, {"text": huge, "text_pair": huge}],
        "qa": [{"question": "what is good?", "context": huge}, {"question": "q", "context": "tiny context"}],
        "ner": [{"tokens": huge.split()}, {"tokens": ["john", "lives", "here"]}],
    }
    for name, examples in cases.items():
        task = get_task(name)
        rec = RecordingTokenizer(tokenizer)
        got = task.count_tokens(examples, rec, 64)
        assert got == _full_count(task, examples, tokenizer, 64), name
        assert rec.longest <= 64 * 16, f"{name}: tokenized an input of {rec.longest:,} characters"
    # blanks and long tokens: a first prefix with too few tokens is widened, so the count stays right
    task = get_task("classification")
    odd = [{"text": "x" + " " * 5000 + " ".join(["word"] * 100)}, {"text": "supercalifragilistic" * 100}]
    assert task.count_tokens(odd, tokenizer, 64) == _full_count(task, odd, tokenizer, 64)
    assert task.count_tokens([{"text": "a b c"}], tokenizer, None) == _full_count(task, [{"text": "a b c"}],
                                                                                  tokenizer, 10**9)


def test_a_maximal_predict_does_not_stall_healthz_or_another_tenant(hsettings, tiny_bert, monkeypatch) -> None:
    settings = hsettings.model_copy(update={"max_predict_inputs": 16, "max_input_chars": 50_000})
    app = create_app(settings)
    release, in_forward = threading.Event(), threading.Event()
    original = TorchPredictor.run

    def run(self: TorchPredictor, items: list[Any]) -> list[Any]:
        out = original(self, items)
        if any(len(x.get("text") or "") > 10_000 for x in items):
            in_forward.set()
            # Keep the maximal request in real, CPU-bound forward passes until the others were measured.
            deadline = time.monotonic() + 60
            while not release.is_set() and time.monotonic() < deadline:
                original(self, items)
        return out

    monkeypatch.setattr(TorchPredictor, "run", run)
    with serve(app) as url:
        sessions = app.state.tuneforge.sessions
        (_, big_key), (_, small_key) = new_tenant(sessions), new_tenant(sessions)
        big_model = install_model(app, big_key, tiny_bert, name="big")
        small_model = install_model(app, small_key, tiny_bert, name="small")
        with httpx.Client(base_url=url, timeout=120) as http:  # load both models first: not what is measured
            for key, model in ((big_key, big_model), (small_key, small_model)):
                r = http.post("/v1/predict", json={"model": model, "inputs": ["warm up"]},
                              headers={"Authorization": f"Bearer {key}"})
                assert r.status_code == 200, r.text
        maximal = {"model": big_model, "inputs": ["word " * 10_000] * 16}  # 16 x 50,000 characters: allowed
        result: dict[str, Any] = {}

        def big() -> None:
            t0 = time.monotonic()
            result["response"] = httpx.post(f"{url}/v1/predict", json=maximal, timeout=120,
                                            headers={"Authorization": f"Bearer {big_key}"})
            result["seconds"] = time.monotonic() - t0

        thread = threading.Thread(target=big)
        thread.start()
        try:
            assert in_forward.wait(60), "the maximal request never reached its forward pass"
            with httpx.Client(base_url=url, timeout=60) as http:
                t0 = time.monotonic()
                health = http.get("/healthz")
                small = http.post("/v1/predict", json={"model": small_model, "inputs": ["a good movie"]},
                                  headers={"Authorization": f"Bearer {small_key}"})
                victims = time.monotonic() - t0
            still_running = thread.is_alive()
        finally:
            release.set()
            thread.join(120)
    assert health.status_code == 200 and small.status_code == 200, (health.text, small.text)
    assert still_running, "the small requests were answered only after the maximal one"
    assert result["response"].status_code == 200, result["response"].text
    body = result["response"].json()
    assert len(body["data"]) == 16 and body["usage"]["prompt_tokens"] == 16 * 64  # cut at max_length
    assert victims < result["seconds"]

