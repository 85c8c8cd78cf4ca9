"""Fixtures of the hardening tests: one API on SQLite (the database is not what these tests are about) and real,
servable models (an untrained head over the tiny BERT) registered for a tenant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Api, running_api
from tests.service_support import make_settings
from tuneforge import runs
from tuneforge.store.db import utcnow
from tuneforge.store.models import Model
from tuneforge.store.tenants import authenticate


@pytest.fixture
def hsettings(tmp_path, tiny_bert) -> Any:
    return make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'tf.db'}", base_models={"tiny-bert": tiny_bert})


@pytest.fixture
def hapi(hsettings) -> Iterator[Api]:
    with running_api(hsettings) as a:
        yield a


def install_model(api: Api, key: str, base: Path, name: str = "m", task_name: str = "classification") -> str:
    """A servable fine-tuned model of the tenant behind ``key`` (untrained head, max_length 64); returns its id."""
    import torch
    from transformers import AutoTokenizer

    from tuneforge.tasks import get_task

    labels = {"classification": ["negative", "positive"], "ner": ["O", "B-PER", "I-PER"],
              "qa": ["start", "end"]}[task_name]
    state = api.app.state.tuneforge
    with api.sessions() as s:
        p = authenticate(s, key)
        model_id = f"ft:tiny-bert:{p.tenant_name}:{name}"
        storage_key = f"models/{p.tenant_id}/{name}"
        s.add(Model(id=model_id, tenant_id=p.tenant_id, job_id="ftjob-x", base_model="tiny-bert", task=task_name,
                    storage_key=storage_key, bytes=1, created_at=utcnow()))
        s.commit()
    out = state.storage.local_path(storage_key)
    torch.manual_seed(0)
    get_task(task_name).build_model(base, labels, multi_label=False).save_pretrained(str(out),
                                                                                    safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    runs.write_manifest(out, {"name": name, "task": task_name, "labels": labels, "max_length": 64, "stride": 16,
                              "multi_label": False, "method": "full",
                              "base_model": {"name": "tiny-bert", "path": str(base)}})
    return model_id
