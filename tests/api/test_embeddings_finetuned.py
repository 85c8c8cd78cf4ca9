"""/v1/embeddings from a tenant's fine-tuned encoder (``model="ft:..."``): the mean-pooled, L2-normalised hidden
states of the run's encoder (not the base model's), metered like base-model embeddings, another tenant's model a
404; in-process and through the official ``openai`` client against a live server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openai
import pytest
from openai import OpenAI

from tests.service_support import install_model, new_tenant, serve
from tuneforge.api import create_app
from tuneforge.store.db import utcnow
from tuneforge.store.models import Model
from tuneforge.store.tenants import authenticate

TEXTS = ["a good movie", "awful and boring film", "paris is the capital of france"]
#: an encoder that differs from the base model's (its weights moved by noise), so its embeddings are its own
FINE_TUNED = {"seed": 1, "noise": 0.05}


def expected(folder: Path, texts: list[str], max_length: int = 64) -> np.ndarray:
    """The recipe written out independently: the run's encoder loaded by plain transformers, tokens mean-pooled
    over the attention mask, L2-normalised."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    enc = AutoModel.from_pretrained(str(folder)).eval()
    rows = []
    with torch.no_grad():
        for t in texts:
            batch = tok([t], truncation=True, max_length=max_length, return_tensors="pt")
            hidden = enc(**batch).last_hidden_state[0]
            v = hidden.mean(0).numpy()
            rows.append(v / np.linalg.norm(v))
    return np.stack(rows)


def _folder(app, model_id: str) -> Path:
    with app.state.tuneforge.sessions() as s:
        return app.state.tuneforge.storage.local_path(s.get(Model, model_id).storage_key)


@pytest.mark.parametrize("task_name", ["classification", "ner", "qa"])
def test_a_fine_tuned_encoder_embeds_and_is_metered(api, tiny_bert, task_name):
    _, ka = api.tenant()
    _, kb = api.tenant()
    a, b = api.as_(ka), api.as_(kb)
    model_id = install_model(api.app, ka, tiny_bert, task_name, **FINE_TUNED)
    r = a.post("/v1/embeddings", json={"model": model_id, "input": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model_id and [d["index"] for d in body["data"]] == [0, 1, 2]
    vecs = np.array([d["embedding"] for d in body["data"]])
    assert vecs.shape == (3, 32) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert np.allclose(vecs, expected(_folder(api.app, model_id), TEXTS), atol=1e-5)
    base = np.array([d["embedding"] for d in a.post("/v1/embeddings", json={"model": "tiny-bert",
                                                                               "input": TEXTS}).json()["data"]])
    assert not np.allclose(vecs, base, atol=1e-3)  # the fine-tuned encoder, not the base model
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 3 * 2

    usage = a.get("/v1/usage").json()
    by_model = {(row["kind"], row["model"]): row["quantity"] for row in usage["data"]}
    assert by_model[("embedded_tokens", model_id)] == body["usage"]["prompt_tokens"]
    assert by_model[("requests", model_id)] == 1

    for other in (b, a):  # another tenant's model reads exactly like a missing one
        model = model_id if other is b else model_id + "x"
        r = other.post("/v1/embeddings", json={"model": model, "input": "a good movie"})
        assert r.status_code == 404 and r.json()["error"]["param"] == "model"
        assert "models/" not in r.text and str(tiny_bert) not in r.text
    assert not any(row["model"] == model_id for row in b.get("/v1/usage").json()["data"])


def test_huge_inputs_are_cut_before_tokenizing_and_counted_at_max_length(api, tiny_bert):
    _, key = api.tenant()
    c = api.as_(key)
    model_id = install_model(api.app, key, tiny_bert, "classification", max_length=32, **FINE_TUNED)
    limit = api.app.state.tuneforge.settings.max_input_chars
    huge = ("good " * limit)[:limit]
    r = c.post("/v1/embeddings", json={"model": model_id, "input": [huge, "a good movie"]})
    assert r.status_code == 200, r.text
    short = c.post("/v1/embeddings", json={"model": model_id, "input": "a good movie"}).json()
    assert r.json()["usage"]["prompt_tokens"] == 32 + short["usage"]["prompt_tokens"]
    vec = np.array(r.json()["data"][0]["embedding"])
    assert np.allclose(vec, expected(_folder(api.app, model_id), [huge], max_length=32)[0], atol=1e-5)


def test_an_ensemble_is_refused_with_a_clear_message(api, tiny_bert, tmp_path):
    from tuneforge.inference.ensemble import build_ensemble

    _, key = api.tenant()
    c = api.as_(key)
    state = api.app.state.tuneforge
    one, two = (install_model(api.app, key, tiny_bert, "classification", name=n, **FINE_TUNED)
                for n in ("one", "two"))
    with state.sessions() as s:
        p = authenticate(s, key)
        s.add(Model(id=f"ft:tiny-bert:{p.tenant_name}:ens", tenant_id=p.tenant_id, job_id="ftjob-y",
                    base_model="tiny-bert", task="classification", storage_key=f"models/{p.tenant_id}/ens", bytes=1,
                    created_at=utcnow()))
        s.commit()
        ens_id = f"ft:tiny-bert:{p.tenant_name}:ens"
    ens_dir = state.storage.local_path(f"models/{p.tenant_id}/ens")
    build_ensemble([_folder(api.app, one), _folder(api.app, two)], ens_dir, overwrite=True)
    r = c.post("/v1/embeddings", json={"model": ens_id, "input": "a good movie"})
    assert r.status_code == 400 and "ensemble" in r.json()["error"]["message"]
    assert "Traceback" not in r.text and str(state.settings.data_dir) not in r.text


@pytest.fixture
def served(settings):
    app = create_app(settings)
    with serve(app) as url:
        yield url, app


def test_fine_tuned_embeddings_through_the_openai_client(served, tiny_bert):
    url, app = served
    _, ka = new_tenant(app.state.tuneforge.sessions)
    _, kb = new_tenant(app.state.tuneforge.sessions)
    a = OpenAI(base_url=f"{url}/v1", api_key=ka, max_retries=0)
    b = OpenAI(base_url=f"{url}/v1", api_key=kb, max_retries=0)
    model_id = install_model(app, ka, tiny_bert, "ner", **FINE_TUNED)
    emb = a.embeddings.create(model=model_id, input=TEXTS)  # the client asks for base64 and decodes it
    vecs = np.array([d.embedding for d in emb.data])
    assert emb.model == model_id and vecs.shape == (3, 32)
    assert np.allclose(vecs, expected(_folder(app, model_id), TEXTS), atol=1e-5)
    assert emb.usage.prompt_tokens == emb.usage.total_tokens > 0
    floats = a.embeddings.create(model=model_id, input="a good movie", encoding_format="float")
    assert np.allclose(floats.data[0].embedding, vecs[0], atol=1e-6)
    with pytest.raises(openai.NotFoundError):
        b.embeddings.create(model=model_id, input="a good movie")
