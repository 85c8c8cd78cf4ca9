"""What every route shares: request ids, the error format, rate limits, the trial, usage, docs, metrics,
health; and embeddings from a base encoder."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import timedelta

import numpy as np
from sqlalchemy import select

from tuneforge.store.db import utcnow
from tuneforge.store.models import Tenant


def test_every_response_has_a_request_id(api, acme):
    for r in (api.client.get("/healthz"), api.client.get("/v1/models"), acme.get("/v1/nope"),
              acme.get("/v1/files/file-x"), acme.post("/v1/predict", json={})):
        assert r.headers["x-request-id"].startswith("req_"), (r.status_code, r.headers)
    assert len({api.client.get("/healthz").headers["x-request-id"] for _ in range(3)}) == 3
    assert api.client.get("/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"


def test_errors_use_the_openai_format(api, acme):
    r = api.client.get("/v1/files")
    assert r.status_code == 401
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = api.client.get("/v1/files", headers={"Authorization": "Bearer tf_wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = acme.post("/v1/fine_tuning/jobs", json={"model": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] in ("model", "training_file")


def test_rate_limit_answers_429_with_headers(api):
    c = api.as_(api.tenant(requests_per_minute=3)[1])
    ok = [c.get("/v1/files") for _ in range(3)]
    assert all(r.status_code == 200 for r in ok)
    assert ok[0].headers["x-ratelimit-limit-requests"] == "3"
    assert [int(r.headers["x-ratelimit-remaining-requests"]) for r in ok] == [2, 1, 0]
    r = c.get("/v1/files")
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert int(r.headers["retry-after"]) >= 1 and r.headers["x-ratelimit-remaining-requests"] == "0"
    assert r.headers["x-ratelimit-reset-requests"].endswith("s")
    other = api.as_(api.tenant(requests_per_minute=3)[1])
    assert other.get("/v1/files").status_code == 200  # limits are per tenant


def test_an_ended_trial_keeps_data_readable_but_stops_work(api):
    name, key = api.tenant(plan="trial")
    with api.sessions() as s:
        s.scalar(select(Tenant).where(Tenant.name == name)).trial_ends_at = utcnow() - timedelta(days=1)
        s.commit()
    c = api.as_(key)
    assert c.get("/v1/files").status_code == 200
    r = c.post("/v1/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "fine-tune"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "trial_expired"


def test_usage_is_metered_per_tenant_and_exported_as_csv(api):
    _, ka = api.tenant()
    _, kb = api.tenant()
    a, b = api.as_(ka), api.as_(kb)
    for _ in range(4):
        a.get("/v1/files")
    b.get("/v1/files")
    u = a.get("/v1/usage").json()
    assert u["object"] == "usage" and u["totals"]["requests"] == 4  # a request counts once it is answered
    assert u["quotas"]["max_concurrent_jobs"] == {"limit": 8, "used": 0}
    assert b.get("/v1/usage").json()["totals"]["requests"] == 1
    r = a.get("/v1/usage/export")
    assert r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["kind"] for row in table} == {"requests"} and sum(int(x["quantity"]) for x in table) == 5


def test_docs_health_and_metrics(api, acme):
    assert api.client.get("/docs").status_code == 200
    paths = api.client.get("/openapi.json").json()["paths"]
    for p in ("/v1/files", "/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events",
              "/v1/models", "/v1/predict", "/v1/embeddings", "/v1/usage", "/healthz", "/metrics"):
        assert p in paths
    assert api.client.get("/healthz").json()["database"] == "ok"
    acme.get("/v1/files")
    text = api.client.get("/metrics").text
    assert 'tuneforge_http_requests_total{method="GET",route="/v1/files",status="200"}' in text
    assert "tuneforge_jobs" in text


def test_embeddings_are_unit_vectors_in_float_and_base64(acme):
    r = acme.post("/v1/embeddings", json={"model": "tiny-bert", "input": ["a good movie", "a bad movie"]})
    assert r.status_code == 200, r.text
    body = r.json()
    vecs = np.array([d["embedding"] for d in body["data"]])
    assert vecs.shape == (2, 32) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert body["usage"]["prompt_tokens"] > 0 and [d["index"] for d in body["data"]] == [0, 1]
    one = acme.post("/v1/embeddings", json={"model": "tiny-bert", "input": "a good movie",
                                            "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(one["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, vecs[0], atol=1e-5)  # batched or alone, the same vector
    if "minilm" in [m["id"] for m in acme.get("/v1/models").json()["data"]]:  # aliases name the same encoder
        r = acme.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "hello"})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384
    r = acme.post("/v1/embeddings", json={"model": "tiny-bert", "input": [1, 2, 3]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    r = acme.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


def _envelope(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == code, err
    assert r.headers["x-request-id"].startswith("req_") and r.headers["x-should-retry"] == "false"
    return err


def test_request_bodies_are_capped_with_a_413(api, settings):
    from tests.api.conftest import running_api

    # 4 inputs of 5 MB (the request that stalled the server): refused from its content-length, nothing parsed
    with running_api(settings.model_copy(update={"max_request_bytes": 64 * 1024})) as small:
        c = small.as_(small.tenant()[1])
        r = c.post("/v1/predict", json={"model": "ft:x", "inputs": ["word " * 2**20] * 4})
        err = _envelope(r, 413, "request_too_large")
        assert "65,536 bytes" in err["message"] and "fewer or shorter inputs" in err["message"]
        # a streamed body (no content-length) is cut off at the limit too
        body = json.dumps({"model": "tiny-bert", "input": ["x" * 10_000] * 20}).encode()
        chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
        r = c.post("/v1/embeddings", content=chunks, headers={"content-type": "application/json"})
        _envelope(r, 413, "request_too_large")
        # under the limit, the same routes answer as before
        assert c.post("/v1/embeddings", json={"model": "tiny-bert", "input": "a good movie"}).status_code == 200


def test_inputs_longer_than_the_character_limit_are_refused_with_a_400(api, settings):
    from tests.api.conftest import running_api

    with running_api(settings.model_copy(update={"max_input_chars": 1000})) as small:
        c = small.as_(small.tenant()[1])
        r = c.post("/v1/predict", json={"model": "ft:none", "inputs": ["ok", "x" * 1001]})
        err = _envelope(r, 400, "input_too_long")
        assert err["param"] == "inputs" and "inputs[1]" in err["message"] and "1,000" in err["message"]
        r = c.post("/v1/predict", json={"model": "ft:none", "inputs": [{"question": "q" * 10, "context": "c" * 995}]})
        _envelope(r, 400, "input_too_long")  # the characters of an object's texts add up
        r = c.post("/v1/embeddings", json={"model": "tiny-bert", "input": "y" * 5000})
        assert _envelope(r, 400, "input_too_long")["param"] == "input"
        assert c.post("/v1/embeddings", json={"model": "tiny-bert", "input": "y" * 1000}).status_code == 200
