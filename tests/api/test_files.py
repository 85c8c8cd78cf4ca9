"""/v1/files: upload, list, retrieve, content, delete; validation, limits, quotas, isolation, idempotency."""

from __future__ import annotations

from tests.api.conftest import running_api
from tests.service_support import jsonl, rows

DATA = jsonl(rows())


def _upload(c, data: bytes = DATA, name: str = "train.jsonl", purpose: str = "fine-tune", headers=None):
    return c.post("/v1/files", files={"file": (name, data)}, data={"purpose": purpose}, headers=headers or {})


def test_upload_list_retrieve_download_delete(acme):
    r = _upload(acme)
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["object"] == "file" and f["id"].startswith("file-") and f["bytes"] == len(DATA)
    assert f["filename"] == "train.jsonl" and f["purpose"] == "fine-tune" and f["status"] == "processed"
    assert acme.get(f"/v1/files/{f['id']}").json() == f
    assert [x["id"] for x in acme.get("/v1/files").json()["data"]] == [f["id"]]
    assert acme.get(f"/v1/files/{f['id']}/content").content == DATA
    d = acme.delete(f"/v1/files/{f['id']}")
    assert d.status_code == 200 and d.json() == {"id": f["id"], "object": "file", "deleted": True}
    assert acme.get(f"/v1/files/{f['id']}").status_code == 404


def test_files_are_stored_under_generated_names(acme, api):
    f = _upload(acme, name="../../etc/evil name.jsonl").json()
    assert f["filename"] == "evil name.jsonl"
    stored = list((api.app.state.tuneforge.settings.artifacts_dir / "files").rglob("*.jsonl"))
    assert [p.name for p in stored] == [f"{f['id']}.jsonl"]


def test_another_tenant_gets_404_for_every_file_route(acme, globex):
    fid = _upload(acme).json()["id"]
    for r in (globex.get(f"/v1/files/{fid}"), globex.get(f"/v1/files/{fid}/content"),
              globex.delete(f"/v1/files/{fid}")):
        assert r.status_code == 404, r.text
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert globex.get("/v1/files").json()["data"] == []
    assert acme.get(f"/v1/files/{fid}").status_code == 200  # untouched


def test_bad_uploads_are_refused_with_the_reason(acme, settings):
    r = _upload(acme, name="train.pdf")
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_file_type"
    r = _upload(acme, purpose="assistants")
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"
    with running_api(settings.model_copy(update={"max_upload_bytes": 100})) as small:
        c = small.as_(small.tenant()[1])
        r = _upload(c, data=b"x" * 5000)
        assert r.status_code == 413 and "100 bytes" in r.json()["error"]["message"]
        assert _upload(c, data=b'{"text": "a", "label": "b"}\n').status_code == 200


def test_storage_quota_is_enforced_with_429(api):
    c = api.as_(api.tenant(storage_bytes=len(DATA) + 10)[1])
    assert _upload(c).status_code == 200
    r = _upload(c)
    assert r.status_code == 429 and r.json()["error"]["code"] == "storage_limit"
    assert r.headers["x-ratelimit-limit-storage"] == str(len(DATA) + 10) and "retry-after" in r.headers
    assert len(c.get("/v1/files").json()["data"]) == 1


def test_idempotency_key_replays_the_first_upload(acme):
    h = {"Idempotency-Key": "upload-1"}
    first = _upload(acme, headers=h)
    again = _upload(acme, headers=h)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    other = _upload(acme, data=DATA + b'{"text": "x", "label": "positive"}\n', headers=h)
    assert other.status_code == 422 and other.json()["error"]["type"] == "idempotency_error"
    assert len(acme.get("/v1/files").json()["data"]) == 1
