"""GET /v1/models/{id}/card: a fine-tuned model's card (markdown) for its owner only; base models have one too."""

from __future__ import annotations

import json

import yaml

from tests.api.test_models import _fake_model
from tests.evaluation.test_card import MANIFEST


def _with_manifest(api, key: str, name: str, *, card: str | None = None) -> str:
    mid = _fake_model(api, key, name)
    state = api.app.state.tuneforge
    with api.sessions() as s:
        from tuneforge.store.models import Model

        folder = state.storage.local_path(s.get(Model, mid).storage_key)
    (folder / "tuneforge.json").write_text(json.dumps({**MANIFEST, "name": name}), encoding="utf-8")
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return mid


def test_the_owner_gets_the_card_and_another_tenant_a_404(api):
    _, ka = api.tenant()
    _, kb = api.tenant()
    mid = _with_manifest(api, ka, "written", card="---\nlicense: mit\n---\n\n# written\n")
    r = api.as_(ka).get(f"/v1/models/{mid}/card")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    assert r.text == "---\nlicense: mit\n---\n\n# written\n"  # the run folder's README.md as written
    missing = api.as_(kb).get(f"/v1/models/{mid}/card")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"

    built = _with_manifest(api, ka, "older")  # trained before cards: built from its manifest
    text = api.as_(ka).get(f"/v1/models/{built}/card").text
    front = yaml.safe_load(text.split("---\n", 2)[1])
    assert front["model-index"][0]["name"] == "older" and "/srv/" not in text
    assert api.as_(kb).get(f"/v1/models/{built}/card").status_code == 404


def test_base_models_have_a_card(api):
    _, ka = api.tenant()
    r = api.as_(ka).get("/v1/models/tiny-bert/card")  # an operator's base model: little is known
    assert r.status_code == 200 and "# tiny-bert" in r.text
    assert api.as_(ka).get("/v1/models/no-such-model/card").status_code == 404
