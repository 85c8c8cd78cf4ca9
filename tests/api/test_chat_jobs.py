"""Chat fine-tuning jobs through the official ``openai`` client (issue 19, "Jobs"): a chat file makes a generation
job with no metadata, LoRA SFT by default; OpenAI's ``method`` (supervised / dpo and their hyperparameters) maps
onto the run; events and checkpoints carry OpenAI's metric names; a DPO job trains from the SFT job's model; a file
that does not validate, or holds the other method's data, is refused naming the line or the method that fits; the
models the jobs return serve chat completions; another tenant sees none of it (404). The base model is a tiny
Llama installed as an operator's model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.api.conftest import Api, running_api
from tests.methods.test_dpo import pair_rows
from tests.service_support import database, jsonl, make_settings
from tests.tasks.test_generation_task import chat_rows
from tuneforge.jobs.worker import Worker
from tuneforge.store.models import Model

#: every training option a test job gets: fp32 on any CPU, a log line per step
FAST = {"precision": "fp32", "logging_steps": 1}


def openai_pair_rows(n: int = 12) -> list[dict[str, Any]]:
    """OpenAI's preference format (``input``, ``preferred_output``, ``non_preferred_output``)."""
    return [{"input": {"messages": [{"role": "user", "content": r["prompt"]}]},
             "preferred_output": [{"role": "assistant", "content": r["chosen"]}],
             "non_preferred_output": [{"role": "assistant", "content": r["rejected"]}]} for r in pair_rows(n)]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_url(request, tmp_path_factory) -> Iterator[str]:
    """A database of this module's own: the jobs its tests leave queued must not reach another module's worker."""
    with database(request.param, tmp_path_factory.mktemp(f"chat-jobs-{request.param}")) as url:
        yield url


@pytest.fixture
def settings(db_url, tmp_path, tiny_bert, tiny_chat_model):
    return make_settings(tmp_path / "data", db_url, base_models={"tiny-bert": tiny_bert,
                                                                 "tiny-chat": tiny_chat_model})


@pytest.fixture
def trained(tmp_path: Path, tiny_bert: Path, tiny_chat_model: Path) -> Iterator[Api]:
    """An app on SQLite for the tests that train (training is the same whatever the database)."""
    s = make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'tf.db'}",
                      base_models={"tiny-bert": tiny_bert, "tiny-chat": tiny_chat_model})
    with running_api(s) as a:
        yield a


def client(api: Api, key: str) -> OpenAI:
    """The openai client, talking to the app in-process (the TestClient is an httpx client)."""
    return OpenAI(base_url="http://testserver/v1", api_key=key, http_client=api.client, max_retries=0)


def upload(c: OpenAI, name: str, rows: list[dict[str, Any]] | bytes) -> str:
    data = rows if isinstance(rows, bytes) else jsonl(rows)
    return c.files.create(file=(name, data), purpose="fine-tune").id


def run_jobs(api: Api) -> None:
    """Validate and train every queued job with an in-process worker."""
    state = api.app.state.tuneforge
    Worker(sessions=state.sessions, settings=state.settings, storage=state.storage).run_until_idle(timeout=600)


def test_a_chat_file_trains_lora_sft_with_openai_metrics_then_dpo_from_its_model(trained: Api) -> None:
    name, ka = trained.tenant(max_concurrent_jobs=10)
    _, kb = trained.tenant()
    a, b = client(trained, ka), client(trained, kb)
    train = upload(a, "chat.jsonl", chat_rows(12))
    dev = upload(a, "dev.jsonl", chat_rows(4))

    job = a.fine_tuning.jobs.create(  # no metadata: the task comes from the file's format
        model="tiny-chat", training_file=train, validation_file=dev, suffix="support",
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 50}}}, extra_body=FAST)
    assert job.status == "validating_files" and job.model_extra["task"] == "generation"
    assert job.method.type == "supervised" and job.method.supervised.hyperparameters.n_epochs == 2
    run_jobs(trained)
    job = a.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:tiny-chat:{name}:support:{job.id.split('-', 1)[1][:8]}"
    assert job.trained_tokens and job.trained_tokens > 0

    # the run: LoRA (the generation default), at 50 x the LoRA SFT rate the task picks
    state = trained.app.state.tuneforge
    with state.sessions() as s:
        folder = state.storage.local_path(s.get(Model, job.fine_tuned_model).storage_key)
    manifest = json.loads((folder / "tuneforge.json").read_text())
    assert manifest["method"] == "lora" and manifest["task"] == "generation"
    assert manifest["resolved"]["encoder_learning_rate"] == pytest.approx(50 * 4e-5 * 5)
    assert manifest["training"]["steps"] == 6  # 12 conversations, batch 4, 2 epochs

    events = a.fine_tuning.jobs.list_events(job.id, limit=200).data
    steps = [e.data for e in events if e.type == "metrics" and e.data and "train_loss" in e.data]
    assert {d["step"] for d in steps} == set(range(1, 7))
    assert all(0.0 <= d["train_mean_token_accuracy"] <= 1.0 and d["train_loss"] > 0 for d in steps)
    assert not any("loss" in d or "eval_loss" in d for d in steps)  # OpenAI's names only
    evals = [e.data for e in events if e.type == "metrics" and e.data and "valid_loss" in e.data]
    assert sorted(d["step"] for d in evals) == [3, 6] and all("valid_mean_token_accuracy" in d for d in evals)
    done = events[0]
    assert done.message.startswith("The job has successfully completed")
    assert done.data["full_valid_loss"] == pytest.approx(manifest["metrics"]["dev"]["valid_loss"])
    # the kept checkpoints are models of their own, as OpenAI's are
    assert done.data["checkpoint_models"] == [f"{job.fine_tuned_model}:ckpt-step-{n}" for n in (3, 6)]

    ckpts = a.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in ckpts] == [6, 3]
    last, first = ckpts[0].metrics, ckpts[1].metrics
    assert last.step == 6 and last.train_loss is not None and last.train_mean_token_accuracy is not None
    assert last.valid_loss is not None and last.valid_mean_token_accuracy is not None
    assert last.full_valid_loss == pytest.approx(manifest["metrics"]["dev"]["valid_loss"])
    assert last.full_valid_mean_token_accuracy == pytest.approx(
        manifest["metrics"]["dev"]["valid_mean_token_accuracy"])
    assert first.full_valid_loss is None and first.valid_loss == next(d for d in evals if d["step"] == 3)["valid_loss"]
    table = a.files.content(job.result_files[0]).text.splitlines()
    assert table[0].startswith("step,epoch,train_loss,learning_rate") and "valid_mean_token_accuracy" in table[0]

    # DPO from the SFT job's model, on OpenAI-format preference pairs
    prefs = upload(a, "prefs.jsonl", openai_pair_rows(12))
    dpo = a.fine_tuning.jobs.create(model=job.fine_tuned_model, training_file=prefs, suffix="prefs",
                                    method={"type": "dpo", "dpo": {"hyperparameters": {
                                        "beta": 0.2, "n_epochs": 1, "batch_size": 4}}}, extra_body=FAST)
    assert dpo.method.type == "dpo" and dpo.method.dpo.hyperparameters.beta == 0.2
    run_jobs(trained)
    dpo = a.fine_tuning.jobs.retrieve(dpo.id)
    assert dpo.status == "succeeded", dpo.error
    assert dpo.model == job.fine_tuned_model
    assert dpo.fine_tuned_model == f"ft:tiny-chat:{name}:prefs:{dpo.id.split('-', 1)[1][:8]}"  # one naming scheme
    with state.sessions() as s:
        dpo_folder = state.storage.local_path(s.get(Model, dpo.fine_tuned_model).storage_key)
    dpo_manifest = json.loads((dpo_folder / "tuneforge.json").read_text())
    assert dpo_manifest["method"] == "dpo" and dpo_manifest["config"]["dpo_beta"] == 0.2
    assert dpo_manifest["config"]["epochs"] == 1
    assert dpo.method.dpo.hyperparameters.beta == 0.2 and dpo.method.dpo.hyperparameters.n_epochs == 1
    dpo_steps = [e.data for e in a.fine_tuning.jobs.list_events(dpo.id, limit=100).data
                 if e.type == "metrics" and e.data and "train_loss" in e.data]
    assert dpo_steps and all("rewards/accuracies" in d and "rewards/margins" in d for d in dpo_steps)
    assert dpo_steps[-1]["train_loss"] == pytest.approx(0.6931, abs=1e-2)  # DPO starts at log 2

    # the names the jobs return serve chat completions; the DPO model lists the SFT model as its parent
    hi = [{"role": "user", "content": "Say hello."}]
    for model in (job.fine_tuned_model, dpo.fine_tuned_model):
        r = a.chat.completions.create(model=model, messages=hi, max_tokens=4, temperature=0)
        assert r.model == model and r.usage.completion_tokens > 0 and r.choices[0].finish_reason in ("stop", "length")
    assert a.models.retrieve(dpo.fine_tuned_model).model_extra["parent"] == job.fine_tuned_model

    # another tenant sees none of it
    for call in (lambda: b.fine_tuning.jobs.retrieve(job.id), lambda: b.fine_tuning.jobs.list_events(job.id),
                 lambda: b.fine_tuning.jobs.checkpoints.list(job.id), lambda: b.files.retrieve(train),
                 lambda: b.files.content(prefs), lambda: b.models.retrieve(job.fine_tuned_model),
                 lambda: b.fine_tuning.jobs.cancel(dpo.id),
                 lambda: b.chat.completions.create(model=dpo.fine_tuned_model, messages=hi, max_tokens=2)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert job.fine_tuned_model not in [m.id for m in b.models.list().data]
    with pytest.raises(openai.BadRequestError) as e:  # nor train from tenant A's model or file
        b.fine_tuning.jobs.create(model=job.fine_tuned_model, training_file=upload(b, "p.jsonl", pair_rows(12)),
                                  method={"type": "dpo"})
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        b.fine_tuning.jobs.create(model="tiny-chat", training_file=train)
    assert e.value.code == "file_not_found"


def test_n_epochs_auto_is_openais_rule_and_the_validation_estimate_uses_it(trained: Api) -> None:
    _, key = trained.tenant()
    a = client(trained, key)
    rows = [{"prompt": f"Question {i}?", "completion": f"Answer {i}."} for i in range(20)]  # prompt/completion
    job = a.fine_tuning.jobs.create(model="tiny-chat", training_file=upload(a, "pc.jsonl", rows),
                                    extra_body={**FAST, "max_length": 64})
    assert job.model_extra["task"] == "generation" and job.hyperparameters.n_epochs == "auto"
    est = trained.as_(key).post("/v1/fine_tuning/estimates", json={
        "model": "tiny-chat", "training_file": job.training_file, "max_length": 64}).json()
    assert est["epochs"] == 5 and est["examples"] == 20  # 20 examples x 5 epochs reach OpenAI's 100
    run_jobs(trained)
    job = a.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    assert job.hyperparameters.n_epochs == 5 and job.hyperparameters.batch_size == 8  # what auto became, as OpenAI
    assert job.hyperparameters.learning_rate_multiplier == "auto"
    validated = [e for e in a.fine_tuning.jobs.list_events(job.id, limit=100).data
                 if e.message.startswith("Files validated")]
    assert validated[0].data["estimated_tokens"] == est["trained_tokens"]
    with trained.sessions() as s:
        folder = trained.app.state.tuneforge.storage.local_path(s.get(Model, job.fine_tuned_model).storage_key)
    manifest = json.loads((folder / "tuneforge.json").read_text())
    assert manifest["config"]["epochs"] == 5 and manifest["training"]["steps"] == 5 * 3  # batch 8: 3 per epoch
    assert job.trained_tokens == est["trained_tokens"]


@pytest.mark.parametrize(("fmt", "rows"), [
    ("chat", chat_rows(12)),
    ("alpaca", [{"instruction": "Say hi.", "input": f"to {i}", "output": "Hi!"} for i in range(12)]),
    ("sharegpt", [{"conversations": [{"from": "human", "value": f"Hello {i}"}, {"from": "gpt", "value": "Hi!"}]}
                  for i in range(12)]),
    ("preference", openai_pair_rows(12)),
])
def test_every_generation_layout_makes_a_generation_job_without_metadata(api: Api, fmt: str, rows: list) -> None:
    key = api.tenant(max_concurrent_jobs=10)[1]
    a = client(api, key)
    method = {"type": "dpo"} if fmt == "preference" else None
    job = a.fine_tuning.jobs.create(model="tiny-chat", training_file=upload(a, f"{fmt}.jsonl", rows),
                                    **({"method": method} if method else {}))
    assert job.model_extra["task"] == "generation" and job.method.type == ("dpo" if method else "supervised")
    if method:
        assert job.method.dpo.hyperparameters.beta == "auto"


def test_a_file_that_does_not_validate_is_refused_naming_the_line_and_the_code(api: Api) -> None:
    a = client(api, api.tenant()[1])
    rows = chat_rows(12)
    rows[2] = {"messages": [{"role": "user", "content": "Only a question?"}]}  # line 3: no reply
    rows[6] = {"messages": [{"role": "robot", "content": "Beep."}, {"role": "assistant", "content": "Boop."}]}
    with pytest.raises(openai.BadRequestError) as e:
        a.fine_tuning.jobs.create(model="tiny-chat", training_file=upload(a, "bad.jsonl", rows))
    err = e.value.body
    assert e.value.code == "invalid_training_file" and err["param"] == "training_file"
    message = err["message"]
    assert "bad.jsonl" in message and "line 3" in message and "example_missing_assistant_message" in message
    assert "line 7" in message and "unrecognized_role" in message
    assert "/" not in message.split("Fix the file")[0].replace("prompt/completion", "")  # no server path
    broken = jsonl(chat_rows(11)) + b'{"messages": [\n'
    with pytest.raises(openai.BadRequestError) as e:  # a line that is not JSON: read as a chat file all the same
        a.fine_tuning.jobs.create(model="tiny-chat", training_file=upload(a, "broken.jsonl", broken))
    assert e.value.code == "invalid_training_file" and "line 12" in e.value.body["message"]
    assert "invalid_json" in e.value.body["message"] and "generation" in e.value.body["message"]
    assert a.fine_tuning.jobs.list().data == []


def test_a_file_given_a_task_fails_in_the_worker_with_the_same_error(trained: Api) -> None:
    a = client(trained, trained.tenant()[1])
    rows = chat_rows(12)
    rows[2] = {"messages": [{"role": "user", "content": "Only a question?"}]}
    job = a.fine_tuning.jobs.create(model="tiny-chat", training_file=upload(a, "bad.jsonl", rows),
                                    metadata={"task": "generation"})  # the task given: the worker reads the file
    run_jobs(trained)
    job = a.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed" and job.error.code == "invalid_training_file" and job.error.param == "training_file"
    assert "bad.jsonl" in job.error.message and "line 3" in job.error.message
    assert "example_missing_assistant_message" in job.error.message


def test_the_method_must_fit_the_file(api: Api) -> None:
    a = client(api, api.tenant(max_concurrent_jobs=10)[1])
    prefs, chat = upload(a, "prefs.jsonl", pair_rows(12)), upload(a, "chat.jsonl", chat_rows(12))
    with pytest.raises(openai.BadRequestError) as e:  # preference pairs with supervised (the default)
        a.fine_tuning.jobs.create(model="tiny-chat", training_file=prefs)
    assert e.value.code == "invalid_training_file" and "prefs.jsonl" in e.value.body["message"]
    assert "preference pairs" in e.value.body["message"] and "method type 'dpo'" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:  # conversations with dpo
        a.fine_tuning.jobs.create(model="tiny-chat", training_file=chat, method={"type": "dpo"})
    assert e.value.code == "invalid_training_file" and "chat conversations" in e.value.body["message"]
    assert "method type 'supervised'" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:  # dpo on an encoder task
        a.fine_tuning.jobs.create(model="tiny-bert", training_file=upload(a, "cls.jsonl", [
            {"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}] * 6), method={"type": "dpo"})
    assert e.value.code == "unsupported_method" and e.value.param == "method.type"
    assert "generation" in e.value.body["message"]
    for method, expect in (({"type": "reinforcement"}, "reinforcement"),
                           ({"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}, "beta"),
                           ({"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 0}}}, "n_epochs")):
        with pytest.raises(openai.BadRequestError) as e:
            a.fine_tuning.jobs.create(model="tiny-chat", training_file=prefs, method=method)
        assert expect in e.value.body["message"], e.value.body
    assert a.fine_tuning.jobs.list().data == []


def test_a_job_with_the_other_methods_file_given_a_task_fails_in_validation(trained: Api) -> None:
    a = client(trained, trained.tenant()[1])
    chat = upload(a, "chat.jsonl", chat_rows(12))
    job = a.fine_tuning.jobs.create(model="tiny-chat", training_file=chat, method={"type": "dpo"},
                                    metadata={"task": "generation"})
    run_jobs(trained)
    job = a.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed" and job.error.code == "invalid_training_file"
    assert "chat.jsonl" in job.error.message and "method type 'supervised'" in job.error.message


def test_another_tenant_gets_404_for_a_chat_job_and_its_file(api: Api) -> None:
    a, b = client(api, api.tenant()[1]), client(api, api.tenant()[1])
    fid = upload(a, "chat.jsonl", chat_rows(12))
    job = a.fine_tuning.jobs.create(model="tiny-chat", training_file=fid)
    for call in (lambda: b.fine_tuning.jobs.retrieve(job.id), lambda: b.fine_tuning.jobs.list_events(job.id),
                 lambda: b.fine_tuning.jobs.checkpoints.list(job.id), lambda: b.fine_tuning.jobs.cancel(job.id),
                 lambda: b.files.retrieve(fid), lambda: b.files.content(fid), lambda: b.files.delete(fid)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert b.fine_tuning.jobs.list().data == [] and fid not in [f.id for f in b.files.list().data]
    assert a.fine_tuning.jobs.retrieve(job.id).status == "validating_files"
