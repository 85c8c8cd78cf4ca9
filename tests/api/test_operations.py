"""Operations (issue 17, item 14): /docs and /redoc work offline, /readyz, process and job metrics, and every
route documents its error responses with the error envelope."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.service_support import jsonl, rows
from tuneforge.store.db import utcnow
from tuneforge.store.models import Job


def test_docs_and_redoc_load_their_assets_from_the_server(api):
    for page in ("/docs", "/redoc"):
        html = api.client.get(page).text
        assert "cdn." not in html and "fonts.googleapis" not in html, page
        assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css|png))"', html)
        assert assets, page
        for url in assets:
            r = api.client.get(url)
            assert r.status_code == 200 and len(r.content) > 1000, url
    assert "SwaggerUIBundle" in api.client.get("/docs-assets/swagger-ui-bundle.js").text


def test_readyz_checks_the_database_and_its_migrations(api):
    r = api.client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready" and r.json()["migrations"] == "current"
    engine = api.app.state.tuneforge.engine
    head = r.json()["head"]
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'an_older_one'"))
    try:
        r = api.client.get("/readyz")
        assert r.status_code == 503 and r.json()["migrations"] == "behind", r.text
        assert api.client.get("/healthz").status_code == 200  # alive, just not ready
    finally:  # the database is shared by the session's tests
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})


def _samples(api) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    body = api.client.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def test_metrics_show_the_process_and_the_jobs(api):
    c = api.as_(api.tenant(max_concurrent_jobs=10)[1])
    fid = c.post("/v1/files", files={"file": ("t.jsonl", jsonl(rows()))}, data={"purpose": "fine-tune"}).json()["id"]
    ids = [c.post("/v1/fine_tuning/jobs", json={"model": "tiny-bert", "training_file": fid}).json()["id"]
           for _ in range(2)]
    before = _samples(api)  # the database is shared with the session's other tests: compare
    now = utcnow()
    with api.sessions() as s:
        for jid, status, code in zip(ids, ("succeeded", "failed"), (None, "invalid_training_file"), strict=True):
            job = s.get(Job, jid)
            job.status, job.error_code = status, code
            job.validated_at, job.started_at = now, now + timedelta(seconds=4)
            job.finished_at = now + timedelta(seconds=60)
        s.commit()
    after = _samples(api)
    assert after["process_resident_memory_bytes{}"] > 0 and "process_cpu_seconds_total{}" in after

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta("tuneforge_job_failures_total{code=invalid_training_file}") == 1
    assert delta("tuneforge_job_queue_wait_seconds_count{}") == 2
    assert delta("tuneforge_job_queue_wait_seconds_sum{}") == pytest.approx(8)
    assert delta("tuneforge_job_training_seconds_count{}") == 1
    assert delta("tuneforge_job_training_seconds_sum{}") == pytest.approx(56)


def test_every_route_documents_its_errors_with_the_envelope(api):
    spec = api.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # validation errors are 400s here
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if path.startswith("/v1/"):
                assert {"400", "401", "403", "404", "429"} <= codes, (method, path, codes)
            for code in codes - {"200", "201"}:
                ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorPublic"), (method, path, code)
