"""Many LoRA runs on one base: two tiny runs with different label sets served from one copy of their base, a
mixed batch giving each run its own labels and scores (as each run loaded alone), and adapters evicted past the
limit and loaded again on demand."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import write_jsonl
from tuneforge.inference import load_predictor
from tuneforge.inference.adapters import SharedEncoder, adapter_name
from tuneforge.inference.serving import InferenceService
from tuneforge.training import make_config, train

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115
TEXTS = ["a good movie", "awful and boring, really", "i love this film", "not good"]


def _lora(root: Path, base: Path, name: str, rows: list[dict]) -> Path:
    data = write_jsonl(root / f"{name}.jsonl", rows)
    cfg = make_config({"task": "classification", "data": str(data), "base_model": str(base),
                       "output": str(root / name), "epochs": 1, "batch_size": 4, "learning_rate": 5e-3,
                       "precision": "fp32", "method": "lora", "max_length": 32, "seed": len(name)})
    return train(cfg, console=QUIET).output


@pytest.fixture(scope="module")
def two_runs(tiny_bert, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("adapters")
    texts = ["a good movie", "great fun film", "i love this film", "very bad", "not good", "boring film"] * 2
    sentiment = [{"text": t, "label": "positive" if i % 6 < 3 else "negative"} for i, t in enumerate(texts)]
    topics = [{"text": t, "label": ["cinema", "mood", "other"][i % 3]} for i, t in enumerate(texts)]
    return _lora(root, tiny_bert, "sentiment", sentiment), _lora(root, tiny_bert, "topics", topics)


def _same(a: list[dict], b: list[dict]) -> None:
    assert [p["label"] for p in a] == [p["label"] for p in b]
    for x, y in zip(a, b, strict=True):
        assert x["scores"].keys() == y["scores"].keys()
        assert all(abs(x["scores"][k] - y["scores"][k]) < 1e-4 for k in x["scores"])


def test_a_mixed_batch_gives_each_run_its_own_labels_as_alone(two_runs):
    one, two = two_runs
    alone = {run: load_predictor(run).predict(TEXTS) for run in two_runs}
    service = InferenceService(capacity_bytes=10**9)
    try:
        assert service.predict("one", one, TEXTS[:1])[0][0]["label"] in ("positive", "negative")
        service.predict("two", two, TEXTS[:1])
        [shared] = service.shared_encoders()  # one base for both runs
        assert isinstance(shared, SharedEncoder) and len(service.cache.keys()) == 1
        assert sorted(shared.adapters) == sorted([adapter_name(one), adapter_name(two)])
        r1 = shared.run_of(one, lambda: pytest.fail("described again"))
        r2 = shared.run_of(two, lambda: pytest.fail("described again"))
        # one batch interleaving the two runs' rows (what concurrent tenants' requests become)
        items = [(r, ex) for x in TEXTS for r, ex in ((r1, r1.to_examples([x])[0]), (r2, r2.to_examples([x])[0]))]
        out = shared.batcher.fn(items)
        preds = [p for p, _ in out]
        assert all(n > 0 for _, n in out)
        _same(preds[0::2], alone[one])
        _same(preds[1::2], alone[two])
        assert {p["label"] for p in preds[1::2]} <= {"cinema", "mood", "other"}
        assert {p["label"] for p in preds[0::2]} <= {"positive", "negative"}
        # through the service, each tenant's request on its own
        _same(service.predict("two", two, TEXTS)[0], alone[two])
    finally:
        service.close()


def test_adapters_past_the_limit_are_evicted_and_loaded_again(two_runs):
    one, two = two_runs
    alone = load_predictor(one).predict(TEXTS)
    service = InferenceService(capacity_bytes=10**9, max_adapters=1)
    try:
        service.predict("one", one, TEXTS)
        service.predict("two", two, TEXTS)
        [shared] = service.shared_encoders()
        assert shared.adapters == [adapter_name(two)]  # the least recently used one went
        _same(service.predict("one", one, TEXTS)[0], alone)  # loaded again on demand, same answers
        assert shared.adapters == [adapter_name(one)]
        service.unload("one", one)  # a deleted model: its adapter goes before the next batch
        service.predict("two", two, TEXTS[:1])
        assert shared.adapters == [adapter_name(two)]
    finally:
        service.close()


def test_tokens_are_counted_as_the_task_counts_them(two_runs):
    one, _ = two_runs
    predictor = load_predictor(one)
    service = InferenceService(capacity_bytes=10**9)
    try:
        texts = [*TEXTS, "word " * 200]  # one cut at max_length
        _, tokens = service.predict("one", one, texts)
        assert tokens == predictor.task.count_tokens(predictor.to_examples(texts), predictor.tokenizer, 32)
    finally:
        service.close()
