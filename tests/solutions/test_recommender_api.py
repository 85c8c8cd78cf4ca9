"""/v1/solutions/recommender on SQLite and PostgreSQL: register a bundle from the import folder, recommend with
explanations, posted interactions change the next recommendations, similar items, scopes, tenant isolation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.api.conftest import api, db_url, settings  # noqa: F401  (the API fixtures, on both databases)
from tests.solutions.test_recommender import CONFIG, catalogue, events
from tuneforge.solutions.recommender.data import parse_interactions, parse_items
from tuneforge.solutions.recommender.model import RecommenderConfig, train_recommender
from tuneforge.store.models import Tenant

BASE = "/v1/solutions/recommender"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_bert) -> Path:
    model = train_recommender(parse_interactions(((None, r) for r in events()), file="events"),
                              parse_items(((None, r) for r in catalogue()), file="items"),
                              RecommenderConfig(base_model=str(tiny_bert), **{**CONFIG, "steps": 5}))
    return model.save(tmp_path_factory.mktemp("rec-bundle") / "bundle")


def _imports(api, settings, tenant_name: str) -> Path:  # noqa: F811
    """The tenant's own import folder: <data_dir>/imports/<tenant id>."""
    with api.sessions() as s:
        tenant_id = s.scalar(select(Tenant.id).where(Tenant.name == tenant_name))
    return settings.data_dir / "imports" / tenant_id


def _register(api, settings, bundle, name="films"):  # noqa: F811
    name_, key = api.tenant()
    shutil.copytree(bundle, _imports(api, settings, name_) / name, dirs_exist_ok=True)
    c = api.as_(key)
    r = c.post(BASE, json={"name": "Films", "bundle": name})
    assert r.status_code == 200, r.text
    return c, r.json()


def test_register_recommend_events_similar_delete(api, settings, bundle):  # noqa: F811
    c, rec = _register(api, settings, bundle)
    assert rec["summary"]["items"] == 20 and rec["summary"]["cold_items"] == 2
    rid = rec["id"]
    assert [x["id"] for x in c.get(BASE).json()["data"]] == [rid]

    r = c.get(f"{BASE}/{rid}/recommend", params={"user": "0", "k": 3})
    assert r.status_code == 200, r.text
    recs = r.json()["data"]
    assert len(recs) == 3
    assert all(x["explanation"].startswith("Because you liked ") and x["because"] for x in recs)

    # a newcomer's posted likes drive their recommendations and explanations
    r = c.post(f"{BASE}/{rid}/interactions", json={"events": [{"user": "new", "item": "b1", "rating": 5},
                                                              {"user": "new", "item": "b2"}]})
    assert r.status_code == 200 and r.json()["added"] == 2
    recs = c.get(f"{BASE}/{rid}/recommend", params={"user": "new", "k": 3}).json()["data"]
    assert {"b1", "b2"}.isdisjoint({x["item_id"] for x in recs})
    assert {b["item_id"] for x in recs for b in x["because"]} <= {"b1", "b2"}
    assert c.get(f"{BASE}/{rid}").json()["summary"]["events"] == 2

    r = c.post(f"{BASE}/{rid}/interactions", json={"events": [{"user": "new", "item": "nope"}]})
    assert r.status_code == 400 and "nope" in r.text

    sims = c.get(f"{BASE}/{rid}/similar", params={"item": "f9", "k": 4}).json()["data"]
    assert len(sims) == 4 and "f9" not in {s["item_id"] for s in sims}
    assert c.get(f"{BASE}/{rid}/similar", params={"item": "zz"}).status_code == 404

    assert c.delete(f"{BASE}/{rid}").status_code == 200
    assert c.get(f"{BASE}/{rid}").status_code == 404
    assert c.get(f"{BASE}/{rid}/recommend", params={"user": "0"}).status_code == 404


def test_another_tenants_recommender_is_not_found(api, settings, bundle):  # noqa: F811
    c, rec = _register(api, settings, bundle)
    other = api.as_(api.tenant()[1])
    rid = rec["id"]
    assert other.get(BASE).json()["data"] == []
    for r in (other.get(f"{BASE}/{rid}"), other.get(f"{BASE}/{rid}/recommend", params={"user": "0"}),
              other.get(f"{BASE}/{rid}/similar", params={"item": "f1"}),
              other.post(f"{BASE}/{rid}/interactions", json={"events": [{"user": "0", "item": "f1"}]}),
              other.delete(f"{BASE}/{rid}")):
        assert r.status_code == 404, r.text
    assert c.get(f"{BASE}/{rid}").status_code == 200  # still there for its owner


def test_bundles_come_only_from_the_import_folder_and_need_the_train_scope(api, settings, bundle):  # noqa: F811
    name, key = api.tenant()
    imports = _imports(api, settings, name)
    imports.mkdir(parents=True, exist_ok=True)
    shutil.copytree(bundle, settings.data_dir / "outside")
    c = api.as_(key)
    r = c.post(BASE, json={"name": "x", "bundle": "../outside"})
    assert r.status_code == 400 and "import folder" in r.text
    r = c.post(BASE, json={"name": "x", "bundle": "missing"})
    assert r.status_code == 404 and str(settings.data_dir.resolve()) not in r.text  # no server path
    (imports / "broken").mkdir()
    r = c.post(BASE, json={"name": "x", "bundle": "broken"})
    assert r.status_code == 400 and "not a recommender bundle" in r.text
    assert str(settings.data_dir.resolve()) not in r.text and str(settings.data_dir) not in r.text

    # another tenant's import folder, and the shared folder above them, are out of reach
    other, other_key = api.tenant()
    shutil.copytree(bundle, _imports(api, settings, other) / "theirs")
    shutil.copytree(bundle, settings.data_dir / "imports" / "shared")
    for bundle_name in ("theirs", "shared", f"../{_imports(api, settings, other).name}/theirs", "../shared"):
        r = c.post(BASE, json={"name": "x", "bundle": bundle_name})
        assert r.status_code in (400, 404), (bundle_name, r.text)
    assert api.as_(other_key).post(BASE, json={"name": "x", "bundle": "theirs"}).status_code == 200

    name2, predict_key = api.tenant(scopes=["predict"])
    shutil.copytree(bundle, _imports(api, settings, name2) / "ok")
    r = api.as_(predict_key).post(BASE, json={"name": "x", "bundle": "ok"})
    assert r.status_code == 403


def test_a_nul_character_in_the_bundle_name_is_a_clear_400(api, settings, bundle):  # noqa: F811
    name, key = api.tenant()
    shutil.copytree(bundle, _imports(api, settings, name) / "films")
    for bad in ("films\x00", "\x00", "films/\x00/x"):
        r = api.as_(key).post(BASE, json={"name": "x", "bundle": bad})
        assert r.status_code == 400, (bad, r.status_code, r.text)
        err = r.json()["error"]
        assert err["param"] == "bundle" and "NUL" in err["message"]
        assert str(settings.data_dir.resolve()) not in r.text
