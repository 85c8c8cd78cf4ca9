"""A body over the limit is answered 413 in the error format even while the client is still sending it: the server
reads and drops the rest (bounded) instead of closing with unread data, which a client sees as a connection reset
(a broken pipe) and never gets the answer."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.service_support import new_tenant, serve
from tuneforge.api import create_app


def _post(url: str, key: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, method="POST", data=body,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:  # an answer; a URLError (reset, broken pipe) is not caught: the test fails
        return e.code, json.loads(e.read() or b"{}")


def test_an_oversized_predict_gets_its_413_not_a_reset(hsettings) -> None:
    app = create_app(hsettings.model_copy(update={"max_request_bytes": 1024 * 1024}))
    with serve(app) as url:
        _, key = new_tenant(app.state.tuneforge.sessions)
        body = json.dumps({"model": "m", "inputs": ["word " * 2**20] * 4}).encode()  # 20 MB, declared length
        for _ in range(3):  # a reset is a race: try it more than once
            code, answer = _post(f"{url}/v1/predict", key, body)
            assert code == 413, answer
            assert answer["error"]["code"] == "request_too_large"
        # the server is fine afterwards
        code, _ = _post(f"{url}/v1/predict", key, json.dumps({"model": "nope", "inputs": ["hi"]}).encode())
        assert code == 404
