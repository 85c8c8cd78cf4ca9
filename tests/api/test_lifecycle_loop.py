"""The model lifecycle end to end against the live service (issue 23, "Promotion"): serve ``sst@production`` →
log its inputs → a drift report over shifted inputs raises an alert (event row + webhook) → the on-drift schedule
is due → re-train with new labelled data and corrected feedback → champion / challenger on the fixed test set
promotes the challenger, and ``/v1/predict`` answers with it → a re-training that does not beat production stays
``candidate`` → a rollback through the API restores the old version's predictions exactly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.api.conftest import running_api
from tests.api.test_drift_api import OTHER, _Receiver, _texts
from tests.conftest import write_jsonl
from tests.service_support import make_settings
from tests.training.test_continual_retrain import _rows
from tests.training.test_train_matrix import QUIET
from tuneforge.cli.retrain import feedback_rows
from tuneforge.inference import load_predictor
from tuneforge.jobs.retrain import RetrainJobSpec, RetrainSchedule, ScheduleState, due_reason, run_retrain
from tuneforge.solutions.assistant.feedback import Feedback, append_feedback
from tuneforge.store.db import utcnow
from tuneforge.store.input_log import DriftAlertRepo, InputLogRepo
from tuneforge.store.models import Model
from tuneforge.store.registry import db_registry
from tuneforge.store.tenants import authenticate
from tuneforge.training import make_config, train

PROBE = ["a good movie", "awful and boring", "i love this film", "not good", "great fun film", "boring film"]


@pytest.fixture
def api(db_url, tmp_path, tiny_bert):
    settings = make_settings(tmp_path / "data", db_url, base_models={"tiny-bert": tiny_bert},
                             allow_private_urls=True)  # the webhook receiver listens on 127.0.0.1
    with running_api(settings) as a:
        yield a


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    bodies: list[dict] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Receiver,), {"bodies": bodies}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


def _trained_model(api, key: str, tiny_bert: Path, tmp_path: Path) -> str:
    """A fine-tuned model of the tenant, trained on flipped labels (a champion that is wrong on the test set); its
    manifest names its training file, the drift reference."""
    state = api.app.state.tuneforge
    with state.sessions() as s:
        p = authenticate(s, key)
        model_id, storage_key = f"ft:tiny-bert:{p.tenant_name}:v1", f"models/{p.tenant_id}/v1"
        s.add(Model(id=model_id, tenant_id=p.tenant_id, job_id="ftjob-x", base_model="tiny-bert",
                    task="classification", storage_key=storage_key, bytes=1, created_at=utcnow()))
        s.commit()
    data = write_jsonl(tmp_path / "v1-train.jsonl", _rows(flip=True) * 4)
    train(make_config({"task": "classification", "data": str(data), "base_model": str(tiny_bert),
                       "output": str(state.storage.local_path(storage_key)), "epochs": 6, "batch_size": 8,
                       "precision": "fp32", "learning_rate": 5e-3}), console=QUIET)
    return model_id


def _predict(client, model: str) -> tuple[str, list[tuple[str, float]]]:
    r = client.post("/v1/predict", json={"model": model, "inputs": PROBE})
    assert r.status_code == 200, r.text
    return r.json()["model"], [(p["label"], p["score"]) for p in r.json()["data"]]


def _direct(run_dir: Path) -> list[tuple[str, float]]:
    return [(p["label"], p["score"]) for p in load_predictor(run_dir).predict(PROBE)]


def _same(served: list[tuple[str, float]], direct: list[tuple[str, float]]) -> bool:
    return ([lab for lab, _ in served] == [lab for lab, _ in direct]
            and all(abs(a - b) < 1e-5 for (_, a), (_, b) in zip(served, direct, strict=True)))


def _retrain(api, tenant_id: str, spec: RetrainJobSpec) -> dict:
    """The retrain job's runner on the tenant's registry (a change made outside the API's process: the API sees
    it within its reference cache's ttl, or at once once the name's entries are dropped, as here)."""
    state = api.app.state.tuneforge
    events: list[dict] = []
    with state.sessions() as s:
        result = run_retrain(spec, events.append, lambda: False,
                             registry=db_registry(s, tenant_id, state.storage))
    state.registry_refs.invalidate(tenant_id, spec.name)
    assert events[0]["message"].startswith(f"retraining {spec.name}@{spec.source}")
    return result


def test_serve_drift_retrain_promote_keep_and_roll_back(api, tiny_bert, tmp_path, receiver):
    hook, bodies = receiver
    _, key = api.tenant()
    acme = api.as_(key)
    with api.sessions() as s:
        tenant_id = authenticate(s, key).tenant_id

    # 1. version 1 in production, monitored, alerts to the webhook
    m1 = _trained_model(api, key, tiny_bert, tmp_path)
    r = acme.post("/v1/registry/sst/versions", json={"model": m1, "alias": "production", "reason": "first"})
    assert r.status_code == 201 and r.json()["version"] == 1, r.text
    r = acme.post("/v1/models/sst/monitoring", json={"webhook_url": hook, "webhook_secret": "s3cret"})
    assert r.status_code == 200 and r.json()["model"] == "sst", r.text
    served1, v1 = _predict(acme, "sst")
    with api.sessions() as s:
        v1_dir = db_registry(s, tenant_id, api.app.state.tuneforge.storage).get("sst", 1).run_dir
    assert served1 == "sst@1" and _same(v1, _direct(v1_dir))
    assert [lab for lab, _ in v1] == ["negative", "positive"] * 3  # trained on flipped labels: wrong everywhere

    # 2. shifted inputs are logged; the drift report over them raises an alert: an event row and the webhook
    started = utcnow() - timedelta(seconds=1)
    shifted = _texts(OTHER, 40, 8)
    assert acme.post("/v1/predict", json={"model": "sst", "inputs": shifted}).status_code == 200
    with api.sessions() as s:
        logged = InputLogRepo(s, tenant_id).window("sst", 1000)
        assert [row.input for row in logged][-40:] == shifted and {row.served_by for row in logged} == {"sst@1"}
    report = acme.get("/v1/models/sst/drift", params={"window": 40}).json()
    assert report["drift"] is True and report["score"] > report["threshold"], report
    alert_id = report["alert"]["id"]
    with api.sessions() as s:
        [alert] = DriftAlertRepo(s, tenant_id).list().data
        assert (alert.id, alert.model_id, alert.window) == (alert_id, "sst", 40)
        assert alert.deliveries and alert.deliveries[0]["ok"] is True
        alerted_at = alert.created_at
    assert [(b["type"], b["alert_id"], b["model"]) for b in bodies] == [("drift.alert", alert_id, "sst")]

    # the alert makes an on-drift schedule due (the scheduler's decision; the caller starts the job)
    schedule, state = RetrainSchedule(name="sst", on_drift=True), ScheduleState(since=started)
    assert due_reason(schedule, state, now=started, drift_alerts=[alerted_at]) is None  # not before the alert
    reason = due_reason(schedule, state, now=utcnow(), drift_alerts=[alerted_at])
    assert reason is not None and reason.startswith("drift alert at")

    # 3. re-train with new labelled data and corrected feedback; the fixed test set decides: the challenger wins
    bundle = tmp_path / "assistant"
    bundle.mkdir()
    corrected = [("what a great film", "positive"), ("so boring and bad", "negative"), ("bad film", "nonsense")]
    for text, label in corrected:
        append_feedback(bundle, Feedback(message=text, helpful=False, intent="x", correct_intent=label))
    labels = load_predictor(v1_dir).labels
    fb = feedback_rows(bundle, list(labels))
    assert fb == [{"text": t, "label": lab} for t, lab in corrected[:2]]  # an unknown label is left out
    new = write_jsonl(tmp_path / "new.jsonl", _rows() * 4)
    test = write_jsonl(tmp_path / "test.jsonl", _rows())
    result = _retrain(api, tenant_id, RetrainJobSpec(
        job_id="job-1", registry_dir="", name="sst", new_data=str(new), replay=0.0, test_data=str(test), epochs=8,
        actor="scheduler", reason=reason, extra_examples=tuple(fb)))
    assert (result["version"], result["parent"], result["alias"]) == (2, 1, "production"), result
    assert result["mix"]["new_examples"] == 48 + 2
    cmp = result["comparison"]
    assert cmp["decision"] == "promote" and cmp["challenger"] > cmp["champion"]
    assert (cmp["champion_version"], cmp["challenger_version"]) == (1, 2)
    with api.sessions() as s:
        v2_dir = db_registry(s, tenant_id, api.app.state.tuneforge.storage).get("sst", 2).run_dir
    served2, v2 = _predict(acme, "sst")
    assert served2 == "sst@2" and _same(v2, _direct(v2_dir)) and v2 != v1
    right = ["positive", "negative"] * 3
    assert any(lab == want for (lab, _), want in zip(v2, right, strict=True))  # version 1 was right on none
    assert acme.get("/v1/registry/sst").json()["aliases"] == {"production": 2}

    # 5. a re-training that does not beat production (trained on flipped labels) stays candidate
    bad = write_jsonl(tmp_path / "bad.jsonl", _rows(flip=True) * 4)
    kept = _retrain(api, tenant_id, RetrainJobSpec(job_id="job-2", registry_dir="", name="sst", new_data=str(bad),
                                                   replay=0.0, epochs=2))
    assert (kept["version"], kept["parent"], kept["alias"]) == (3, 2, "candidate"), kept
    assert kept["comparison"]["decision"] != "promote" and kept["comparison"]["champion_version"] == 2
    assert acme.get("/v1/registry/sst").json()["aliases"] == {"candidate": 3, "production": 2}
    assert _predict(acme, "sst") == (served2, v2)

    # 4. roll back through the API: exactly version 1's predictions again (labels and scores)
    r = acme.post("/v1/registry/sst/rollback", json={"reason": "the retrained model regressed on tweets"})
    assert r.status_code == 200 and r.json()["version"] == 1, r.text
    assert _predict(acme, "sst") == (served1, v1)
    # the log kept going across the promotion and the rollback, each row naming the version that answered
    with api.sessions() as s:
        served_by = [row.served_by for row in InputLogRepo(s, tenant_id).window("sst", 1000)]
    assert served_by[-len(PROBE):] == ["sst@1"] * len(PROBE) and "sst@2" in served_by
    assert _predict(acme, "sst@2") == (served2, v2)  # version 2 is still there, by number

    history = acme.get("/v1/registry/sst/history").json()["data"]
    actions = [(e["action"], e["alias"], e["version"]) for e in history if e["action"] != "set_test_data"]
    assert actions == [("register", None, 1), ("set_alias", "production", 1), ("register", None, 2),
                       ("set_alias", "production", 2), ("register", None, 3), ("set_alias", "candidate", 3),
                       ("rollback", "production", 1)]
    assert history[-1]["reason"].startswith("the retrained") and history[-1]["previous"] == 2
