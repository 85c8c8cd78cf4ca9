"""A whole job through the official ``openai`` client against a real uvicorn server on loopback: upload, train
(a tiny BERT), events with metrics, checkpoints, models, predict, embeddings, usage, and tenant isolation."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

from tests.service_support import jsonl, new_tenant, rows, serve
from tuneforge.api import create_app
from tuneforge.jobs.runner import _lr_from_multiplier
from tuneforge.store.models import Model


@pytest.fixture
def served(settings):
    app = create_app(settings.model_copy(update={"embedded_workers": 1}))
    with serve(app) as url:
        yield url, app


def test_a_whole_job_through_the_openai_client(served):
    url, app = served
    sessions = app.state.tuneforge.sessions
    _, ka = new_tenant(sessions)
    _, kb = new_tenant(sessions)
    a = OpenAI(base_url=f"{url}/v1", api_key=ka, max_retries=0)
    b = OpenAI(base_url=f"{url}/v1", api_key=kb, max_retries=0)

    train = a.files.create(file=("train.jsonl", jsonl(rows() * 2)), purpose="fine-tune")
    dev = a.files.create(file=("dev.jsonl", jsonl(rows())), purpose="fine-tune")
    assert train.id.startswith("file-") and train.bytes > 0
    job = a.fine_tuning.jobs.create(  # no metadata.task: inferred from the file (text + label)
        model="tiny-bert", training_file=train.id, validation_file=dev.id, suffix="e2e",
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2.0}}},
        extra_body={"logging_steps": 2, "precision": "fp32", "max_length": 32})
    assert job.status == "validating_files" and job.model_extra["task"] == "classification"
    deadline = time.monotonic() + 240
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"job still {job.status}"
        time.sleep(0.5)
        job = a.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model and ":e2e:" in job.fine_tuned_model and job.trained_tokens > 0
    assert job.model_extra["attempt"] == 1 and job.model_extra["failed_attempts"] == 0  # a first run is attempt 1

    assert job.hyperparameters.learning_rate_multiplier == 2.0
    state = app.state.tuneforge
    with sessions() as s:
        folder = state.storage.local_path(s.get(Model, job.fine_tuned_model).storage_key)
    manifest = json.loads((folder / "tuneforge.json").read_text())
    values = {"task": "classification", "base_model": str(state.settings.base_models["tiny-bert"]),
              "data": manifest["config"]["data"], "batch_size": 4}
    auto = _lr_from_multiplier(values, 1.0, state.settings.cache_dir)
    assert manifest["resolved"]["learning_rate"] == pytest.approx(2 * auto)
    assert manifest["training"]["steps"] == 12 and not (folder / "checkpoints").exists()

    events = a.fine_tuning.jobs.list_events(job.id, limit=200).data
    metrics = [e for e in events if e.type == "metrics"]
    assert any("train_loss" in e.data for e in metrics), "no loss in the metrics events"
    assert any("eval_accuracy" in e.data for e in metrics), "no task metric in the metrics events"
    assert [e.message for e in events][0].startswith("The job has successfully completed")  # newest first
    ckpts = a.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in ckpts] == [12, 6] and ckpts[0].fine_tuning_job_id == job.id  # every epoch's
    assert ckpts[0].fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-12"
    [results] = job.result_files
    assert a.files.retrieve(results).purpose == "fine-tune-results"
    table = a.files.content(results).text.splitlines()
    assert table[0].startswith("step,epoch,train_loss") and "eval_accuracy" in table[0]
    steps = [int(line.split(",")[0]) for line in table[1:]]
    assert steps == sorted(set(steps)) and set(range(2, 13, 2)) <= set(steps) and steps[-1] == 12  # every 2 steps
    with pytest.raises(openai.NotFoundError):
        b.files.content(results)
    assert ckpts[0].metrics.train_loss is not None and "eval_accuracy" in ckpts[0].metrics.model_extra
    assert job.fine_tuned_model in [m.id for m in a.models.list().data]
    assert a.models.retrieve(job.fine_tuned_model).id == job.fine_tuned_model
    raw = a.fine_tuning.jobs.with_raw_response.retrieve(job.id)
    assert raw.headers["x-request-id"] and raw.headers["x-ratelimit-limit-requests"]

    for call in (lambda: b.fine_tuning.jobs.retrieve(job.id), lambda: b.models.retrieve(job.fine_tuned_model),
                 lambda: b.files.retrieve(train.id), lambda: b.fine_tuning.jobs.list_events(job.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert job.fine_tuned_model not in [m.id for m in b.models.list().data]

    texts = ["a good movie", "awful and boring", "i love this film", "very bad"]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ka}"}, timeout=60) as http:
        single = [http.post("/v1/predict", json={"model": job.fine_tuned_model, "inputs": [t]}).json()["data"][0]
                  for t in texts]
        assert all(p["label"] in {"positive", "negative"} and set(p["scores"]) == {"positive", "negative"}
                   for p in single)
        with ThreadPoolExecutor(8) as pool:  # concurrent requests share forward passes; answers do not change
            together = list(pool.map(lambda t: http.post("/v1/predict", json={
                "model": job.fine_tuned_model, "inputs": [t]}).json()["data"][0], texts * 4))
        for p, q in zip(together, single * 4, strict=True):
            assert p["label"] == q["label"] and abs(p["score"] - q["score"]) < 1e-4
        r = httpx.post(f"{url}/v1/predict", json={"model": job.fine_tuned_model, "inputs": texts},
                       headers={"Authorization": f"Bearer {kb}"})
        assert r.status_code == 404 and r.headers["x-request-id"]
        for c in ckpts:  # each kept checkpoint is a model of its own
            r = http.post("/v1/predict", json={"model": c.fine_tuned_model_checkpoint, "inputs": texts})
            assert r.status_code == 200, r.text
            assert r.json()["model"] == c.fine_tuned_model_checkpoint and r.json()["task"] == "classification"
            assert all(p["label"] in {"positive", "negative"} for p in r.json()["data"])
            other = httpx.post(f"{url}/v1/predict", json={"model": c.fine_tuned_model_checkpoint, "inputs": texts},
                               headers={"Authorization": f"Bearer {kb}"})
            assert other.status_code == 404 and c.fine_tuned_model_checkpoint in other.text
        for missing in (f"{job.fine_tuned_model}:ckpt-step-5", "ft:tiny-bert:nobody:xxxxxxxx:ckpt-step-12"):
            r = http.post("/v1/predict", json={"model": missing, "inputs": texts})
            assert r.status_code == 404 and r.json()["error"]["param"] == "model", r.text
        emb = a.embeddings.create(model="tiny-bert", input=["a good movie", "a bad movie"])
        vec = np.array(emb.data[0].embedding)
        assert len(emb.data) == 2 and vec.shape == (32,) and abs(np.linalg.norm(vec) - 1) < 1e-4
        usage = http.get("/v1/usage").json()
    assert usage["totals"]["trained_tokens"] == job.trained_tokens
    assert usage["totals"]["predicted_tokens"] > 0 and usage["totals"]["requests"] > 10
    by_model = {(r["kind"], r["model"]): r["quantity"] for r in usage["data"]}
    assert by_model[("requests", job.fine_tuned_model)] == 4 + 16  # the predict calls, counted per model
    assert by_model[("trained_tokens", job.fine_tuned_model)] == job.trained_tokens


def test_a_running_job_shows_its_finish_and_cancels_at_once(served):
    url, app = served
    _, key = new_tenant(app.state.tuneforge.sessions)
    a = OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    train = a.files.create(file=("train.jsonl", jsonl(rows())), purpose="fine-tune")
    job = a.fine_tuning.jobs.create(
        model="tiny-bert", training_file=train.id, metadata={"task": "classification"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 500, "batch_size": 4}}},
        extra_body={"logging_steps": 1, "precision": "fp32", "max_length": 16})
    deadline = time.monotonic() + 180
    while True:  # until the training has logged a few steps
        assert time.monotonic() < deadline, "the training logged no steps"
        steps = [e for e in a.fine_tuning.jobs.list_events(job.id, limit=50).data if e.type == "metrics"]
        if len(steps) >= 3:
            break
        time.sleep(0.3)
    assert "/1500" in steps[0].message  # progress: step n of the total
    running = a.fine_tuning.jobs.retrieve(job.id)
    assert running.status == "running"
    assert running.estimated_finish is not None and running.estimated_finish >= int(time.time()) - 1
    cancelled = a.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and a.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    while "Fine-tuning job cancelled." not in [e.message for e in a.fine_tuning.jobs.list_events(job.id).data]:
        assert time.monotonic() < deadline, "the training did not stop"
        time.sleep(0.3)
    done = a.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "cancelled" and done.finished_at is not None and done.fine_tuned_model is None
