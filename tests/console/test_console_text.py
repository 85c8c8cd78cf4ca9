"""What the server says, in the Chinese console: every error code and job event the server writes has Chinese
text, and a real job's events, errors and metrics show in Chinese; "Mean training loss" is named so; an empty
monitor chart shows the requested dates (not 1 January 1970); the header stays one row at 1280 px."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import DESKTOP, ROOT, new_page, output_dir
from tuneforge.console.i18n import MESSAGES, catalog

SRC = ROOT / "src" / "tuneforge"
APP_JS = SRC / "console" / "static" / "js" / "app.js"


def _event_patterns() -> list[tuple[re.Pattern[str], str]]:
    """app.js's EVENTS table as Python patterns (JS ``(?<name>`` is Python's ``(?P<name>``)."""
    js = APP_JS.read_text(encoding="utf-8")
    table = js.split("const EVENTS = [", 1)[1].split("\n];", 1)[0]
    rows = re.findall(r'^\s*\[/(.*)/, "([a-z_.]+)"\],$', table, flags=re.M)
    assert len(rows) > 15
    return [(re.compile(p.replace("(?<", "(?P<").replace("\\/", "/")), key) for p, key in rows]


def _codes_the_server_sends() -> set[str]:
    codes: set[str] = set()
    for f in SRC.rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        codes |= set(re.findall(r'\bcode="([a-z_]+)"', text))
        codes |= set(re.findall(r'default_code = "([a-z_]+)"', text))
        codes |= set(re.findall(r'"code": "([a-z_]+)"', text))
    return codes


def test_every_error_code_the_server_sends_has_chinese_text():
    codes = _codes_the_server_sends()
    assert {"rate_limit_exceeded", "invalid_training_file", "file_in_use", "trial_expired"} <= codes
    missing = sorted(c for c in codes if f"error.{c}" not in MESSAGES)
    assert not missing, missing
    zh = catalog("zh")
    assert all(re.search(r"[\u4e00-\u9fff]", zh[f"error.{c}"]) for c in codes)


# one of each message the jobs package writes (jobs/queue.py, worker.py, runner.py, service.py)
EVENTS = {
    "Created fine-tuning job: ftjob-abc123": "已创建微调任务：ftjob-abc123",
    "Validating files on worker w-1.": "正在工作节点 w-1 上校验文件。",
    "Validated 12 training examples.": "已校验 12 个训练样本。",
    "Validated 12 training examples, 6 validation examples.": "已校验 12 个训练样本、6 个验证样本。",
    "Files validated; the job is queued for training.": "文件校验通过，任务已排队等待训练。",
    "Attempt 2: training on worker host-9.": "第 2 次训练：在工作节点 host-9 上训练。",
    "Training started (attempt 1).": "训练已开始（第 1 次）。",
    "Step 6/12: train_loss=0.6931, eval_accuracy=0.5000": "第 6/12 步：训练损失=0.6931，验证集准确率=0.5000",
    "Step 3: logged": "第 3 步：已记录",
    "Checkpoint saved at step 6.": "已在第 6 步保存检查点。",
    "Resuming from the checkpoint at step 6 (saved by attempt-1).": "从第 6 步的检查点继续训练（由 attempt-1 保存）。",
    "An earlier attempt (attempt-1) had finished training; using its model.":
        "之前的一次训练（attempt-1）已完成，直接使用它的模型。",
    "The job has successfully completed: new model ft:tiny-bert:acme:x1.":
        "任务已成功完成：新模型 ft:tiny-bert:acme:x1。",
    "Fine-tuning job failed: Step 1: bad": "微调任务失败：第 1 步：bad",
    "Cancellation requested.": "已请求取消。",
    "Pause requested; stopping at the next step.": "已请求暂停，将在下一步停止。",
    "Fine-tuning job cancelled.": "微调任务已取消。",
    "Pause requested.": "已请求暂停。",
    "Fine-tuning job paused.": "微调任务已暂停。",
    "Fine-tuning job paused; resume it to continue from its last checkpoint.":
        "微调任务已暂停；继续后将从最近的检查点接着训练。",
    "Pause request withdrawn.": "已撤回暂停请求。",
    "Fine-tuning job resumed; it continues from its last checkpoint.": "微调任务已继续，将从最近的检查点接着训练。",
    "Attempt 1 failed (worker lost); the job is queued again and will resume from its last checkpoint "
    "(failed attempts: 1 of 3).":
        "第 1 次训练失败（worker lost）；任务已重新排队，将从最近的检查点继续（失败次数：1 / 3）。",
    "The worker is shutting down; the job is queued again and will resume from its last checkpoint.":
        "The worker is shutting down；任务已重新排队，将从最近的检查点继续。",
}


def test_every_plain_event_message_of_the_jobs_package_is_matched():
    patterns = _event_patterns()
    literals: set[str] = set()
    for f in (SRC / "jobs").rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        literals |= set(re.findall(r'add_event\(\w+, [\w.]+, "([^"]+)"', text))
        literals |= set(re.findall(r'"message": "([^"{]+)"', text))
    literals = {x for x in literals if x[:1].isupper()}
    assert {"Fine-tuning job cancelled.", "Pause requested."} <= literals
    for message in literals | set(EVENTS):
        assert any(p.match(message) for p, _ in patterns), message
    keys = {key for _, key in patterns}
    assert keys <= set(MESSAGES), sorted(keys - set(MESSAGES))


def test_the_chinese_page_translates_each_event_and_error(page, server):
    page.goto(f"{server.url}/console/login?lang=zh")
    page.wait_for_selector("html[data-ready]")
    got = page.evaluate("""async (messages) => {
        const app = await import('/console/static/js/app.js');
        return {events: messages.map(app.serverText),
                error: app.serverError({code: 'rate_limit_exceeded', message: 'Rate limit reached: 60 requests.'}),
                unknown: app.serverError({code: 'no_such_code', message: 'As the server said.'}),
                jobError: app.serverError({code: 'training_error', message: 'NaN loss'}, {code: true})};
    }""", list(EVENTS))
    assert dict(zip(EVENTS, got["events"], strict=True)) == EVENTS
    assert got["error"] == "请求过于频繁，请稍后重试。详情：Rate limit reached: 60 requests."
    assert got["unknown"] == "As the server said." and got["jobError"] == "训练失败。详情：NaN loss"
    page.goto(f"{server.url}/console/login?lang=en")
    page.wait_for_selector("html[data-ready]")
    en = page.evaluate("""async () => {
        const app = await import('/console/static/js/app.js');
        return [app.serverText('Fine-tuning job cancelled.'),
                app.serverError({code: 'training_error', message: 'NaN loss'}, {code: true})];
    }""")
    assert en == ["Fine-tuning job cancelled.", "training_error: NaN loss"]


@pytest.fixture(scope="module")
def trained(server) -> dict[str, Any]:
    """A tenant with a small finished job (a validation file, so it has dev metrics) and its model."""
    _, key = server.tenant()
    examples = ROOT / "examples"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        ids = [http.post("/v1/files", files={"file": (f"support_intents.{part}.jsonl",
                                                       (examples / f"support_intents.{part}.jsonl").read_bytes())},
                         data={"purpose": "fine-tune"}).json()["id"] for part in ("train", "dev")]
        job = http.post("/v1/fine_tuning/jobs", json={
            "model": "tiny-bert", "training_file": ids[0], "validation_file": ids[1], "logging_steps": 5,
            "metadata": {"task": "classification"}, "max_length": 32,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 16}}}},
        ).json()
        deadline = time.monotonic() + 300
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, job["status"]
            time.sleep(0.3)
            job = http.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
        assert job["status"] == "succeeded", job
        return {"key": key, "job": job["id"], "model": job["fine_tuned_model"], "files": ids}


def _open(page: Any, server: Any, key: str, path: str) -> None:
    page.goto(f"{server.url}/console/login")
    page.evaluate("k => sessionStorage.setItem('tf_key', k)", key)
    page.goto(f"{server.url}{path}")
    page.wait_for_selector("html[data-ready]")


def test_a_jobs_events_and_metrics_show_in_chinese(page, server, trained):
    _open(page, server, trained["key"], f"/console/jobs/{trained['job']}?lang=zh")
    page.wait_for_function("document.querySelectorAll('#events-table tbody tr').length > 5")
    rows = page.locator("#events-table tbody tr td:nth-child(3)").all_inner_texts()
    untranslated = [r for r in rows if not re.search(r"[\u4e00-\u9fff]", r)]
    assert not untranslated, untranslated
    assert any(r.startswith("任务已成功完成：新模型 ft:") for r in rows)
    assert any(re.match(r"第 \d+/\d+ 步：训练损失=", r) for r in rows)
    legends = page.evaluate("Chart.getChart('dev-chart').data.datasets.map(d => d.label)")
    assert "准确率" in legends and not any(x.startswith("eval_") or x == "accuracy" for x in legends)
    assert "验证集准确率" in page.inner_text("#checkpoints-table")
    page.goto(f"{server.url}/console/jobs/{trained['job']}?lang=en")  # English is left as the server wrote it
    page.wait_for_selector("html[data-ready]")
    page.wait_for_function("document.querySelectorAll('#events-table tbody tr').length > 5")
    assert any(r.startswith("The job has successfully completed")
               for r in page.locator("#events-table tbody tr td:nth-child(3)").all_inner_texts())
    assert "Accuracy" in page.evaluate("Chart.getChart('dev-chart').data.datasets.map(d => d.label)")


def test_server_errors_show_in_chinese_with_their_details(page, server, trained):
    _open(page, server, trained["key"], f"/console/models/{trained['model']}?lang=zh")
    limit = server.app.state.tuneforge.settings.max_input_chars
    page.fill("#play-text", "x" * (limit + 1))
    page.click("#play-button")
    error = page.locator("#play-result .error")
    error.wait_for()
    text = error.inner_text()
    assert text.startswith("有输入超过长度上限，请缩短或拆分。详情：") and f"{limit:,}" in text
    # the same error in English: the server's message alone
    page.goto(f"{server.url}/console/models/{trained['model']}?lang=en")
    page.wait_for_selector("html[data-ready]")
    page.fill("#play-text", "x" * (limit + 1))
    page.click("#play-button")
    error.wait_for()
    assert error.inner_text().startswith("inputs[0]:") and "详情" not in error.inner_text()


@pytest.mark.parametrize(("lang", "name", "metric"), [("en", "Mean training loss", "Accuracy"),
                                                      ("zh", "平均训练损失", "准确率")])
def test_the_mean_training_loss_is_named_so(page, server, trained, lang, name, metric):
    _open(page, server, trained["key"], f"/console/models/{trained['model']}?lang={lang}")
    assert page.inner_text("#mean-train-loss .k") == name
    assert float(page.inner_text("#mean-train-loss .v")) > 0
    assert page.inner_text("#metric-accuracy .k") == metric
    assert "Final loss" not in page.inner_text("main") and "最终损失" not in page.inner_text("main")


def test_an_empty_monitor_chart_shows_the_requested_dates(page, server):
    _, key = server.tenant()  # a tenant with no items
    for lang in ("en", "zh"):
        _open(page, server, key, f"/console/solutions/monitor?lang={lang}")
        assert page.locator("#series-empty").is_visible()
        x = page.evaluate("(() => { const s = Chart.getChart('series-chart').scales.x;"
                          " return {min: s.min, max: s.max, labels: s.ticks.map(t => String(t.label))}; })()")
        now = time.time() * 1000
        assert abs(x["max"] - now) < 3_600_000 and abs(x["max"] - x["min"] - 7 * 86_400_000) < 3_600_000
        assert 5 <= len(x["labels"]) <= 12 and not any("1970" in label for label in x["labels"])
        if lang == "zh":
            assert all("月" in label for label in x["labels"])


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_header_is_one_row_at_1280_px(browser, watch, server, lang):
    from tuneforge.store.tenants import create_tenant, ensure_plans

    with server.app.state.tuneforge.sessions() as s:  # a long organisation name, as real ones are
        ensure_plans(s)
        _, _, key = create_tenant(s, name=f"northwind-traders-europe-{lang}-{int(time.time())}", plan="pro")
    page = new_page(browser, watch, viewport=DESKTOP)
    assert DESKTOP["width"] == 1280
    for path in ("/console/datasets", "/console/jobs/new", "/console/solutions/monitor", "/console/account"):
        _open(page, server, key, f"{path}?lang={lang}")
        boxes = page.evaluate("""[...document.querySelectorAll('header.top > *, header.top .nav li')].map(e => {
            const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, right: r.right}; })""")
        tops, bottoms = [b["top"] for b in boxes], [b["bottom"] for b in boxes]
        assert max(tops) < min(bottoms), f"{path}: the header wraps ({boxes})"
        assert max(b["right"] for b in boxes) <= 1280
        assert page.evaluate("document.querySelector('header.top').getBoundingClientRect().height") < 70
        nav = page.evaluate("(() => { const n = document.querySelector('.nav');"
                            " return [n.scrollWidth, n.clientWidth]; })()")
        assert nav[0] <= nav[1], f"{path}: the navigation is cut at 1280 px"
        page.screenshot(path=str(output_dir() / f"header-1280-{lang}-{Path(path).name}.png"))
    page.context.close()
    assert not watch.errors and not watch.foreign, (watch.errors, watch.foreign)
