"""The model page shows the model card (GET /v1/models/{id}/card) as text: its markdown is never parsed as HTML."""

from __future__ import annotations

import json

from tests.evaluation.test_card import MANIFEST
from tuneforge.store.db import utcnow
from tuneforge.store.models import Model
from tuneforge.store.tenants import authenticate

CARD = "---\nlicense: mit\n---\n\n# intents\n\n<img src=x onerror=\"document.title='owned'\"> **bold**\n"


def _model_with_card(server, key: str) -> str:
    state = server.app.state.tuneforge
    with state.sessions() as s:
        p = authenticate(s, key)
        model_id = f"ft:tiny-bert:{p.tenant_name}:carded"
        storage_key = f"models/{p.tenant_id}/carded"
        s.add(Model(id=model_id, tenant_id=p.tenant_id, job_id="ftjob-x", base_model="tiny-bert",
                    task="classification", storage_key=storage_key, bytes=3, created_at=utcnow()))
        s.commit()
    folder = state.storage.local_path(storage_key)
    folder.mkdir(parents=True)
    (folder / "tuneforge.json").write_text(json.dumps({**MANIFEST, "name": "carded"}), encoding="utf-8")
    (folder / "README.md").write_text(CARD, encoding="utf-8")
    return model_id


def test_the_model_page_shows_the_card_as_text(server, page):
    _, key = server.tenant()
    model_id = _model_with_card(server, key)
    page.goto("/console/login")
    page.evaluate("k => sessionStorage.setItem('tf_key', k)", key)
    page.goto(f"/console/models/{model_id}?lang=zh")
    page.wait_for_selector("html[data-ready]")
    assert page.inner_text("#model-card-h") == "模型卡片"
    assert page.text_content("#model-card-text") == CARD  # the markdown as text
    assert page.locator("#model-card-text img").count() == 0 and page.title() != "owned"
    page.goto("/console/models/tiny-bert?lang=en")
    page.wait_for_selector("html[data-ready]")
    assert "# tiny-bert" in page.text_content("#model-card-text")
