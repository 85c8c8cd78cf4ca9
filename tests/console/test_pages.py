"""Every console page: accessibility checks in the light and dark themes, a phone-sized screen, keyboard-only
sign-in, the language switch, the validation report of a bad file, API keys shown once, and job controls.

With ``TUNEFORGE_CONSOLE_DOCS=1`` the screenshots of every page are also written to ``docs/console/``
(``python scripts/console_screenshots.py`` does that, training a real small model for them)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import PHONE, ROOT, new_page, output_dir, sign_in

A11Y = (Path(__file__).parent / "a11y.js").read_text(encoding="utf-8")
EXAMPLES = ROOT / "examples"
DOCS = os.environ.get("TUNEFORGE_CONSOLE_DOCS") == "1"
BAD = (b'{"text": "where is my parcel", "label": "delivery"}\n{"text": "refund please"}\n'
       b'{"text": "", "label": "refund"}\n{"label": "account"}\n{"text": "reset my password", "label": "account"}\n')


def _wait_job(http: httpx.Client, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/v1/fine_tuning/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job still {job['status']}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def acme(server) -> dict[str, Any]:
    """A tenant with files (a good one, a bad one), a finished job, its model, and some usage."""
    _, key = server.tenant()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        def upload(name: str, data: bytes) -> str:
            r = http.post("/v1/files", files={"file": (name, data)}, data={"purpose": "fine-tune"})
            assert r.status_code == 200, r.text
            return str(r.json()["id"])

        train = upload("support_intents.train.jsonl", (EXAMPLES / "support_intents.train.jsonl").read_bytes())
        dev = upload("support_intents.dev.jsonl", (EXAMPLES / "support_intents.dev.jsonl").read_bytes())
        bad = upload("tickets-draft.jsonl", BAD)
        models = {m["id"] for m in http.get("/v1/models").json()["data"]}
        # the docs show a real pretrained encoder that learns the intents; the tests use the tiny random BERT
        base, epochs, lr = ("bert-tiny", 15, 4.0) if DOCS and "bert-tiny" in models else ("tiny-bert", 2, 1.0)
        job = http.post("/v1/fine_tuning/jobs", json={
            "model": base, "training_file": train, "validation_file": dev, "suffix": "intents",
            "metadata": {"task": "classification"}, "seed": 0, "logging_steps": 5,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {
                "n_epochs": epochs, "batch_size": 16, "learning_rate_multiplier": lr}}}}).json()
        job = _wait_job(http, job["id"], timeout=600)
        assert job["status"] == "succeeded", job
        model = job["fine_tuned_model"]
        for text in ("where is my order", "I want my money back", "thank you so much"):
            http.post("/v1/predict", json={"model": model, "inputs": [text]})
        http.post("/v1/embeddings", json={"model": base, "input": ["hello"]})
        http.post("/v1/api_keys", json={"name": "website", "scopes": ["predict"]})
    return {"key": key, "train": train, "dev": dev, "bad": bad, "job": job["id"], "model": model}


def _pages(a: dict[str, Any]) -> dict[str, str]:
    return {"login": "/console/login", "datasets": "/console/datasets",
            "dataset": f"/console/datasets/{a['train']}", "dataset-problems": f"/console/datasets/{a['bad']}",
            "new-job": f"/console/jobs/new?training_file={a['train']}&validation_file={a['dev']}",
            "jobs": "/console/jobs", "job": f"/console/jobs/{a['job']}", "models": "/console/models",
            "model": f"/console/models/{a['model']}", "account": "/console/account",
            "solution-assistant": "/console/solutions/assistant", "solution-monitor": "/console/solutions/monitor",
            "solution-recommender": "/console/solutions/recommender"}


def _open(page: Any, url: str, key: str) -> None:
    if not url.endswith("/login"):
        page.goto("/console/login")
        page.evaluate("k => sessionStorage.setItem('tf_key', k)", key)
    page.goto(url)
    page.wait_for_selector("html[data-ready]")
    if "/models/" in url:
        page.fill("#play-text", "my parcel never arrived, where is it?")
        page.click("#play-button")
        page.wait_for_selector("#predicted-label")
    page.evaluate("document.fonts.ready")
    page.evaluate("window.scrollTo(0, 0)")


def _shoot(page: Any, name: str) -> None:
    path = output_dir() / "pages" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    if DOCS:
        docs = ROOT / "docs" / "console"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs / path.name)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_page_passes_the_accessibility_checks(browser, watch, acme, theme):
    page = new_page(browser, watch, scheme=theme)
    problems = {}
    for name, url in _pages(acme).items():
        _open(page, url, acme["key"])
        assert page.evaluate("document.documentElement.dataset.theme") == theme
        found = page.evaluate(A11Y)
        if found:
            problems[name] = found
        _shoot(page, f"{name}-{theme}")
    page.context.close()
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)
    assert not watch.errors and not watch.foreign, (watch.errors, watch.foreign)


def test_every_page_fits_a_phone_screen(browser, watch, acme):
    page = new_page(browser, watch, viewport=PHONE)
    too_wide = {}
    for name, url in _pages(acme).items():
        _open(page, url, acme["key"])
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if width[0] > width[1] + 1:
            too_wide[name] = width
        if name in ("datasets", "job", "model", "new-job"):
            _shoot(page, f"{name}-phone")
    page.context.close()
    assert not too_wide, f"pages wider than the phone's screen: {too_wide}"
    assert not watch.errors, watch.errors


def test_sign_in_with_the_keyboard_only(page, acme):
    page.goto("/console/login")
    page.wait_for_selector("html[data-ready]")
    assert page.evaluate("document.activeElement.id") == "api-key"  # the one thing to do here has focus
    active = "(document.activeElement.id || document.activeElement.className)"
    back = []
    for _ in range(4):  # backwards from the key: the header's controls, then the skip link first of all
        page.keyboard.press("Shift+Tab")
        back.append(page.evaluate(active))
    assert back == ["theme-toggle", "lang-select", "brand", "skip"], back
    page.focus("#api-key")
    page.keyboard.press("Tab")
    assert page.evaluate(active) == "sign-in"
    page.focus("#api-key")
    page.keyboard.type(acme["key"])
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/datasets")
    page.wait_for_selector("html[data-ready]")
    page.keyboard.press("Tab")  # the skip link comes first and moves focus to the content
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # the file chooser is reachable and opens from the keyboard (a label for the file input)
    assert page.evaluate("document.querySelector('label[for=file-input]').textContent") == "Choose a file"


def test_a_wrong_key_is_refused_with_a_message(page):
    page.goto("/console/login")
    page.get_by_label("API key").fill("tf_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "not valid" in alert.inner_text() and page.url.endswith("/console/login")
    assert page.get_attribute("#api-key", "aria-invalid") == "true"


def test_the_language_switch_shows_chinese_everywhere(page, acme):
    sign_in(page, acme["key"], then="/console/jobs")
    page.select_option("#lang-select", "zh")
    page.wait_for_url("**lang=zh")
    page.wait_for_selector("html[data-ready]")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.get_by_role("navigation").inner_text().split() == ["数据集", "新建微调任务", "任务", "模型", "客服助手",
                                                                   "舆情监控", "推荐", "账户"]
    assert page.locator("#jobs-table .badge").first.inner_text() == "已完成"  # text the script renders too
    page.goto("/console/models")  # the choice is remembered
    page.wait_for_selector("html[data-ready]")
    assert page.locator("h1").inner_text() == "模型"
    page.select_option("#lang-select", "en")
    page.wait_for_url("**lang=en")
    assert page.locator("h1").inner_text() == "Models"


def test_the_validation_report_lists_every_problem_by_line(page, acme):
    sign_in(page, acme["key"], then=f"/console/datasets/{acme['bad']}")
    assert page.inner_text("#problem-count .v") == "3"
    rows = page.locator("#problems-table tbody tr")
    lines = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
    assert lines == ["2", "3", "4"]
    assert "label" in rows.nth(0).inner_text()
    # cleaning drops the empty text with its reason; the file stays invalid for other reasons, so it refuses
    page.get_by_role("button", name="Clean into a new file").click()
    page.locator("#clean-result .error").wait_for()


def test_an_api_key_is_shown_once_then_revoked(page, acme):
    sign_in(page, acme["key"], then="/console/account")
    assert page.locator("#quotas progress").count() == 3
    page.get_by_label("Name").fill("ci-bot")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key-secret")
    secret.wait_for()
    value = secret.inner_text()
    assert value.startswith("tf_") and len(value) == 46
    row = page.locator("#keys-table tr", has_text="ci-bot")
    assert value[:10] in row.inner_text() and value not in page.locator("#keys-table").inner_text()
    page.reload()
    page.wait_for_selector("html[data-ready]")
    assert page.locator("#new-key").is_hidden() and value not in page.content()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revoke ci-bot").click()
    page.locator("#keys-table tr", has_text="ci-bot").locator(".badge.bad").wait_for()
    assert httpx.get(f"{page.url.split('/console')[0]}/v1/api_keys/current",
                     headers={"Authorization": f"Bearer {value}"}).status_code == 401


def test_pause_resume_and_cancel_a_job(page, server, acme):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {acme['key']}"}) as http:
        job = http.post("/v1/fine_tuning/jobs", json={
            "model": "tiny-bert", "training_file": acme["train"], "metadata": {"task": "classification"},
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 500}}}}).json()
    sign_in(page, acme["key"], then=f"/console/jobs/{job['id']}")
    status = page.locator("#job-status")
    page.get_by_role("button", name="Pause").click()
    page.wait_for_function("() => document.getElementById('job-status').dataset.status === 'paused'")
    page.get_by_role("button", name="Resume").click()
    page.wait_for_function("() => ['queued', 'validating_files', 'running']"
                           ".includes(document.getElementById('job-status').dataset.status)")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Cancel job").click()
    page.wait_for_function("() => document.getElementById('job-status').dataset.status === 'cancelled'",
                           timeout=60_000)
    assert status.inner_text() == "Cancelled" and page.locator("#cancel-button").is_hidden()


def test_a_running_job_shows_its_progress_and_finish_in_both_languages(page, server, acme):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {acme['key']}"}) as http:
        job = http.post("/v1/fine_tuning/jobs", json={
            "model": "tiny-bert", "training_file": acme["train"], "metadata": {"task": "classification"},
            "logging_steps": 1, "max_length": 16,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 500}}}}).json()
        try:
            sign_in(page, acme["key"], then=f"/console/jobs/{job['id']}")
            page.wait_for_function("() => /^Step [0-9,]+ of [0-9,]+ \\([0-9]+%\\)$/"
                                   ".test(document.getElementById('progress-text').textContent)", timeout=120_000)
            page.wait_for_function("() => /^Estimated finish .+, in (about [0-9]+ min|under a minute)$/"
                                   ".test(document.getElementById('progress-eta').textContent)", timeout=60_000)
            assert 0 < float(page.locator("#progress-bar").get_attribute("value") or 0) < 1
            assert page.locator("#job-attempt").inner_text().endswith("1")
            page.goto(f"{server.url}/console/jobs/{job['id']}?lang=zh")
            page.wait_for_function("() => /^第 [0-9,]+ \\/ [0-9,]+ 步（[0-9]+%）$/"
                                   ".test(document.getElementById('progress-text').textContent)", timeout=60_000)
            page.wait_for_function("() => /^预计 .+ 完成，/"
                                   ".test(document.getElementById('progress-eta').textContent)", timeout=60_000)
            assert page.locator("#progress-h").inner_text() == "进度"
        finally:
            http.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel")


def test_the_accessibility_checks_find_what_they_look_for(page):
    page.set_content('<html><body><h1>Title</h1><h3>Skipped a level</h3><input id="nameless">'
                     '<button></button><p style="color:#aaa;background:#fff">faint text</p><canvas></canvas>'
                     '<span id="twice"></span><span id="twice"></span></body></html>')
    found = "\n".join(page.evaluate(A11Y))
    for expected in ("html has no lang", "heading level skipped", "form control without a label: input#nameless",
                     "button without an accessible name", "contrast 2.32 < 4.5", "canvas without role=img",
                     "id used 2 times: twice"):
        assert expected in found, found
