"""The bad-input corpus through the API's file routes: upload, then preview, clean, split and a job estimate for
the file's task, and a job without a task (the task inferred from the file). No 500 anywhere; every refusal in
OpenAI's error format; the preview names what to fix; a file the readers refuse is refused by the estimate and by
job creation as ``invalid_training_file``."""

from __future__ import annotations

import json

import pytest

from tests.hardening.checks import missing_names
from tests.hardening.corpus import Case, build


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return [c for c in build(tmp_path_factory.mktemp("corpus")) if not c.special]


def _refusal(r, where: str) -> str:
    assert r.status_code != 500 and r.status_code < 500, f"{where}: {r.status_code} {r.text[:500]}"
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"], f"{where}: {r.text[:500]}"
        return err["message"]
    return ""


def test_the_corpus_through_the_file_routes(hapi, corpus) -> None:
    c = hapi.as_(hapi.tenant()[1])
    failures = []
    for case in corpus:
        r = c.post("/v1/files", files={"file": (case.name, case.path.read_bytes())}, data={"purpose": "fine-tune"})
        _refusal(r, f"{case.name} upload")
        if r.status_code != 200:
            failures.append(f"{case.name}: upload refused: {r.text[:300]}")
            continue
        fid = r.json()["id"]
        r = c.get(f"/v1/files/{fid}/preview", params={"task": case.task})
        message = _refusal(r, f"{case.name} preview")
        if r.status_code == 200:
            body = r.json()
            message = " ".join(f"{p['file']}:{p['line']} [{p['field']}] {p['message']} {p['hint']}"
                               for p in body["problems"] + (body["warnings"] if case.warn else []))
            if not case.warn and not case.loose and body["valid"]:
                failures.append(f"{case.name}: preview says valid")
        if not case.loose and missing_names(case, message):
            failures.append(f"{case.name}: preview {missing_names(case, message)} not in {message[:400]}")
        assert "Traceback" not in r.text and "/tmp/" not in message, (case.name, message)  # no server paths

        for route, body in (("clean", {"task": case.task}), ("split", {"task": case.task})):
            _refusal(c.post(f"/v1/files/{fid}/{route}", json=body), f"{case.name} {route}")
        job = {"model": "tiny-bert", "training_file": fid, "metadata": {"task": case.task}}
        r = c.post("/v1/fine_tuning/estimates", json=job)
        message = _refusal(r, f"{case.name} estimate")
        if not case.warn and not case.loose:
            if r.status_code != 400:
                failures.append(f"{case.name}: estimate answered {r.status_code}")
            elif missing_names(case, message):
                failures.append(f"{case.name}: estimate {missing_names(case, message)} not in {message[:400]}")
        r = c.post("/v1/fine_tuning/jobs", json={"model": "tiny-bert", "training_file": fid})  # task inferred
        _refusal(r, f"{case.name} job")
        strict = not case.warn and not case.loose
        if strict and (r.status_code != 400 or r.json()["error"]["code"] != "invalid_training_file"):
            failures.append(f"{case.name}: job without a task answered {r.status_code} {r.text[:300]}")
    assert not failures, "\n".join(failures)


def test_deep_json_fails_a_queued_job_as_invalid_training_file(hapi, corpus) -> None:
    from tuneforge.jobs.worker import Worker
    from tuneforge.store.models import Job

    state = hapi.app.state.tuneforge
    c = hapi.as_(hapi.tenant()[1])
    by_name = {case.name: case for case in corpus}
    for name in ("deep.jsonl", "deep.json", "squad-deep.json", "deep-value.jsonl"):
        case = by_name[name]
        fid = c.post("/v1/files", files={"file": (name, case.path.read_bytes())},
                     data={"purpose": "fine-tune"}).json()["id"]
        r = c.post("/v1/fine_tuning/jobs", json={"model": "tiny-bert", "training_file": fid,
                                                 "metadata": {"task": case.task}})
        assert r.status_code == 200, r.text  # the task is given: the file is read by the worker
        worker = Worker(sessions=state.sessions, settings=state.settings, storage=state.storage)
        worker.run_until_idle(timeout=60)
        with state.sessions() as s:
            job = s.get(Job, r.json()["id"])
            assert job.status == "failed", (name, job.status, job.error_message)
            assert job.error_code == "invalid_training_file" and "levels deep" in job.error_message, name
        got = c.get(f"/v1/fine_tuning/jobs/{r.json()['id']}").json()
        assert got["error"]["code"] == "invalid_training_file" and name in json.dumps(got["error"])
