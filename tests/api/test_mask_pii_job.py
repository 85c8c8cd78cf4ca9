"""The ``mask_pii`` training option through the API: a fine-tuning job's extra field, handed to train as is."""

from __future__ import annotations

from tests.api.test_job_options import _body, _file
from tuneforge.jobs.worker import Worker


def test_a_job_with_mask_pii_trains_with_it(api, settings):
    _, key = api.tenant()
    c = api.as_(key)
    r = c.post("/v1/fine_tuning/jobs", json=_body(_file(c), mask_pii=True))
    assert r.status_code == 200, r.text
    assert r.json()["options"] == {"mask_pii": True}
    worker = Worker(sessions=api.sessions, settings=settings, storage=api.app.state.tuneforge.storage)
    for _ in range(100):  # jobs other tests left in the shared database are claimed first: pass them by
        claim = worker.queue.claim("test-worker", ("validating_files",))
        assert claim is not None
        if claim.job_id == r.json()["id"]:
            break
    assert claim.job_id == r.json()["id"]
    spec, _ = worker._train_spec(claim)
    assert spec.values["mask_pii"] is True
    bad = c.post("/v1/fine_tuning/jobs", json=_body(_file(c), mask_pii="sometimes"))
    assert bad.status_code == 400 and "mask_pii" in bad.json()["error"]["message"]
