"""Job options that name data or a model (issue 17, item 1): through the API each is a tenant-scoped id resolved
by the tenant's repositories, never a server path, and no error reveals one."""

from __future__ import annotations

import pytest

from tests.service_support import jsonl, rows
from tuneforge.errors import InvalidRequestError, ModelNotFoundError
from tuneforge.jobs.options import ID_OPTIONS, RESERVED, naming_fields, resolve_options
from tuneforge.jobs.runner import FileRef, _error
from tuneforge.jobs.worker import Worker
from tuneforge.store.db import utcnow
from tuneforge.store.models import Model
from tuneforge.store.tenants import authenticate

ROUTES = ("/v1/fine_tuning/jobs", "/v1/fine_tuning/estimates")


def _file(c) -> str:
    r = c.post("/v1/files", files={"file": ("train.jsonl", jsonl(rows()))}, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def _model(api, key: str, name: str) -> str:
    """A fine-tuned model row of the tenant of ``key`` (its folder need not exist for these checks)."""
    with api.sessions() as s:
        tenant = authenticate(s, key).tenant_id
        mid = f"ft:tiny-bert:{name}:{tenant[-8:]}"
        s.add(Model(id=mid, tenant_id=tenant, job_id="ftjob-x", base_model="tiny-bert", task="classification",
                    storage_key=f"models/{tenant}/ftjob-x", created_at=utcnow()))
        s.commit()
    return mid


def _body(fid: str, **kw):
    return {"model": "tiny-bert", "training_file": fid, "metadata": {"task": "classification"}, **kw}


def _no_path(r, *paths: str) -> dict:
    err = r.json()["error"]
    for p in paths:
        assert p not in err["message"], err["message"]
    assert "/" not in err["message"].replace("n/a", ""), f"a path in: {err['message']}"
    return err


def test_every_trainconfig_field_naming_data_or_a_model_is_reserved_or_an_id():
    fields = naming_fields()
    assert {"data", "eval_data", "output", "base_model", "unlabeled_data", "distill_from"} <= fields
    assert fields <= RESERVED | set(ID_OPTIONS), f"not guarded: {sorted(fields - RESERVED - set(ID_OPTIONS))}"


@pytest.fixture
def world(api, settings):
    """acme with a training file; globex with a file and a model acme must not reach."""
    _, ka = api.tenant(max_concurrent_jobs=10)
    _, kb = api.tenant()
    acme, globex = api.as_(ka), api.as_(kb)
    return {"acme": acme, "fid": _file(acme), "their_file": _file(globex), "their_model": _model(api, kb, "theirs"),
            "own_model": _model(api, ka, "mine"), "data_dir": str(settings.data_dir.resolve())}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("option", sorted(naming_fields() - {"base_model"}))
def test_an_option_naming_a_server_path_is_refused_without_echoing_it(world, route, option):
    c = world["acme"]
    for value in ("/etc/passwd", world["data_dir"], f"{world['data_dir']}/files", "../../files"):
        r = c.post(route, json=_body(world["fid"], **{option: value}))
        assert r.status_code == 400, r.text
        err = _no_path(r, value, world["data_dir"])
        assert option in err["message"]
    assert c.get("/v1/fine_tuning/jobs").json()["data"] == []


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("option", sorted(naming_fields() - {"base_model"}))
def test_another_tenants_id_in_an_option_reads_as_missing(world, route, option):
    c = world["acme"]
    kind = ID_OPTIONS.get(option)
    value = world["their_model"] if kind == "model" else world["their_file"]
    r = c.post(route, json=_body(world["fid"], **{option: value}))
    assert r.status_code == 400, r.text
    err = _no_path(r, world["data_dir"])
    if option in RESERVED:
        assert "set by the job itself" in err["message"]
    else:
        assert err["code"] == {"file": "file_not_found", "model": "model_not_found"}[kind] and err["param"] == option
        # exactly what an id that exists nowhere gets: nothing tells the two apart
        missing = c.post(route, json=_body(world["fid"], **{option: value[:-4] + "zzzz"})).json()["error"]
        assert missing["code"] == err["code"] and missing["message"].replace(value[:-4] + "zzzz", "X") == \
            err["message"].replace(value, "X")
    assert c.get("/v1/fine_tuning/jobs").json()["data"] == []


@pytest.mark.parametrize("route", ROUTES)
def test_the_model_is_a_base_model_name_or_an_own_model_id(world, route):
    c = world["acme"]
    r = c.post(route, json={**_body(world["fid"]), "model": world["their_model"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_found"
    _no_path(r, world["data_dir"])
    for value in ("/etc", world["data_dir"], "./models", "~/x"):
        r = c.post(route, json={**_body(world["fid"]), "model": value})
        assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_available", r.text
        _no_path(r, value, world["data_dir"])


def test_own_ids_are_accepted_and_resolved_to_the_tenants_objects(api, world, settings):
    c = world["acme"]
    unlabeled = _file(c)
    r = c.post("/v1/fine_tuning/jobs", json=_body(world["fid"], distill_from=world["own_model"],
                                                  unlabeled_data=unlabeled))
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["options"] == {"distill_from": world["own_model"], "unlabeled_data": unlabeled}  # ids, not paths
    state = api.app.state.tuneforge
    with api.sessions() as s:
        tenant = s.get(Model, world["own_model"]).tenant_id
        resolved = resolve_options(s, state.storage, tenant, job["options"])
        assert resolved["distill_from"] == str(state.storage.local_path(s.get(Model, world["own_model"]).storage_key))
        assert resolved["unlabeled_data"].startswith(str(state.storage.local_path(f"files/{tenant}")))
        with pytest.raises(InvalidRequestError) as e:
            resolve_options(s, state.storage, tenant, {"distill_from": world["their_model"]})
        assert e.value.code == "model_not_found"
    # the worker hands train the tenant's paths
    worker = Worker(sessions=api.sessions, settings=settings, storage=state.storage)
    claim = worker.queue.claim("test-worker", ("validating_files",))
    assert claim is not None and claim.job_id == job["id"]
    spec, _ = worker._train_spec(claim)
    assert spec.values["distill_from"] == resolved["distill_from"]
    assert spec.values["unlabeled_data"] == resolved["unlabeled_data"]


def test_a_failed_jobs_error_names_no_server_path():
    ref = FileRef("/srv/tf/files/t1/file-abc.jsonl", "file-abc", "train.jsonl", "training_file")
    err = _error(ModelNotFoundError("distill_from: /srv/tf/models/t2/ftjob-9 holds no finished model "
                                    "(bundle folder under /srv/tf)"), [ref])
    assert "/srv" not in err["message"] and "ftjob-9" in err["message"]
    err = _error(OSError("cannot read /srv/tf/files/t1/file-abc.jsonl"), [ref])
    assert err["message"] == "OSError: cannot read train.jsonl (file-abc)"
