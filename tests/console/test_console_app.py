"""The console without a browser: its pages are served with a strict policy, in both languages, and every
message the pages use exists in English and Chinese."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service_support import make_settings
from tuneforge.api import create_app
from tuneforge.console import PAGES
from tuneforge.console.i18n import MESSAGES, catalog, pick_language

CONSOLE = Path(__file__).resolve().parents[2] / "src" / "tuneforge" / "console"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    d = tmp_path_factory.mktemp("console-app")
    with TestClient(create_app(make_settings(d, f"sqlite:///{d / 'tf.db'}"))) as c:
        yield c


def test_every_page_is_served_with_a_content_security_policy(client):
    assert client.get("/console", follow_redirects=False).headers["location"] == "/console/datasets"
    values = {"file_id": "file-x", "job_id": "ftjob-x", "model_id:path": "ft:tiny:acme:x"}
    for name, (path, _, _) in PAGES.items():
        url = "/console" + re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], path)
        r = client.get(url)
        assert r.status_code == 200, (name, r.status_code)
        assert r.text.startswith("<!doctype html>") and f'data-page="{name}"' in r.text
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
        # every script and stylesheet comes from this server
        assert not re.search(r'(src|href)="(https?:)?//', r.text), name
    assert client.get("/console/static/vendor/chartjs/chart.umd.min.js").status_code == 200
    assert (CONSOLE / "static" / "vendor" / "chartjs" / "LICENSE.md").is_file()


def test_the_language_comes_from_the_switch_then_the_browser(client):
    zh = client.get("/console/jobs?lang=zh")
    assert '<html lang="zh-CN"' in zh.text and "任务" in zh.text and zh.cookies.get("tf_lang") == "zh"
    assert '<html lang="zh-CN"' in client.get("/console/models").text  # remembered by the cookie
    client.cookies.clear()
    assert '<html lang="en"' in client.get("/console/models").text
    assert '<html lang="zh-CN"' in client.get("/console/models", headers={"accept-language": "zh-TW,zh;q=0.9"}).text
    assert pick_language(None, None, "fr-FR,en;q=0.5") == "en" and pick_language("de", None, None) == "en"


def test_the_console_can_be_turned_off(tmp_path):
    app = create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'tf.db'}", console=False))
    with TestClient(app) as c:
        assert c.get("/console/datasets").status_code == 404


def test_every_message_used_exists_in_both_languages():
    used: set[str] = set()
    for f in [*CONSOLE.glob("templates/*.html"), *CONSOLE.glob("static/js/*.js")]:
        used |= set(re.findall(r"""\bt\(['"]([a-z_0-9]+\.[a-z_0-9.]+)['"]""", f.read_text(encoding="utf-8")))
    assert len(used) > 150 and not used - set(MESSAGES), sorted(used - set(MESSAGES))
    en, zh = catalog("en"), catalog("zh")
    assert all(en[k].strip() and zh[k].strip() for k in MESSAGES)
    for k in MESSAGES:  # the same placeholders in both
        assert set(re.findall(r"\{\w+\}", en[k])) == set(re.findall(r"\{\w+\}", zh[k])), k
    # keys built in scripts from API values: statuses, tasks, usage kinds, quotas
    for prefix, values in {"status": ["validating_files", "queued", "running", "succeeded", "failed", "cancelled",
                                      "paused"], "task": ["classification", "ner", "qa"],
                           "kind": ["requests", "trained_tokens", "predicted_tokens", "embedded_tokens"],
                           "reason": ["empty", "too_short", "too_long", "label_conflict", "duplicate",
                                      "near_duplicate"], "part": ["train", "dev", "test"]}.items():
        assert all(f"{prefix}.{v}" in MESSAGES for v in values), prefix
