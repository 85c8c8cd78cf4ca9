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


def test_non_ascii_and_quoted_names_download_with_rfc_5987_headers(acme):
    from urllib.parse import unquote

    for name in ("训练数据.jsonl", 'my "best" data.jsonl', "naïve;café\\x.jsonl"):
        f = _upload(acme, name=name).json()
        r = acme.get(f"/v1/files/{f['id']}/content")
        assert r.status_code == 200 and r.content == DATA, (name, r.text)
        header = r.headers["content-disposition"]
        header.encode("ascii")  # a latin-1 header cannot carry 训 (the 500 of before)
        assert header.startswith("attachment; filename=")
        star = header.split("filename*=UTF-8''", 1)[1]
        assert unquote(star) == f["filename"] and '"' not in star and ";" not in star  # the exact name
        fallback = header.split('filename="', 1)[1].split('"', 1)[0]
        assert fallback.isascii() and fallback.endswith(".jsonl")


def test_an_upload_over_the_limit_is_refused_before_its_body_is_read(settings):
    # a declared content-length over the limit: 413 at once, with the OpenAI error envelope and a request id
    with running_api(settings.model_copy(update={"max_upload_bytes": 1000})) as small:
        c = small.as_(small.tenant()[1])
        r = _upload(c, data=b"x" * 200_000)
        assert r.status_code == 413, r.text
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert r.json()["error"]["code"] == "file_too_large" and r.json()["error"]["param"] == "file"
        assert "1,000 bytes" in r.json()["error"]["message"] and r.headers["x-request-id"].startswith("req_")


def test_a_streamed_upload_stops_at_the_limit_without_filling_the_temp_folder(settings, monkeypatch):
    """A chunked upload (no content-length) of 16 MiB against a 256 KiB limit: the 413 comes back while the client
    is still sending, and the multipart parser's temp files never got more than the limit."""
    import select
    import socket

    import starlette.formparsers as formparsers

    from tests.service_support import serve
    from tuneforge.api import create_app

    written = {"bytes": 0}

    class Recording(formparsers.SpooledTemporaryFile):  # type: ignore[misc,name-defined]
        def write(self, s):  # type: ignore[no-untyped-def]
            written["bytes"] += len(s)
            return super().write(s)

    monkeypatch.setattr(formparsers, "SpooledTemporaryFile", Recording)
    limit = 256 * 1024
    app = create_app(settings.model_copy(update={"max_upload_bytes": limit}))
    with serve(app) as url:
        from tests.service_support import new_tenant

        _, key = new_tenant(app.state.tuneforge.sessions)
        host, port = url.removeprefix("http://").split(":")
        boundary = "tfboundary"
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        chunk = (b'{"text": "' + b"a" * 65000 + b'", "label": "x"}\n')
        total, sent, response = 16 * 1024 * 1024, 0, b""
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall((f"POST /v1/files HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                          f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n").encode())
            for part in [head] + [chunk] * (total // len(chunk)):
                try:
                    sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                except OSError:
                    break  # the server closed the connection after answering
                sent += len(part)
                if select.select([sock], [], [], 0)[0]:
                    break
            sock.settimeout(30)
            while b"\r\n\r\n" not in response or b"file_too_large" not in response:
                data = sock.recv(65536)
                if not data:
                    break
                response += data
    assert response.startswith(b"HTTP/1.1 413"), response[:300]
    assert b'"file_too_large"' in response
    assert sent < total // 2, f"the client could send {sent:,} bytes before the 413"
    assert written["bytes"] <= limit + 64 * 1024, f"{written['bytes']:,} bytes went to the temp folder"
