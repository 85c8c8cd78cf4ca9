"""The whole way from a file to a model in the browser: sign in, drop a file, read its validation report and
label chart, split it, start a job on the tiny BERT with a cost estimate, watch the curves move until the job
succeeds, read the evaluation and try the model in the playground. Screenshots of each step are saved."""

from __future__ import annotations

import json
import re

from tests.browser import output_dir, sign_in

POSITIVE = ["good", "great", "fun", "very good"]
NEGATIVE = ["bad", "awful", "boring", "very bad"]
TEMPLATES = ["a {} movie", "this film is {}", "{} film", "it was {}", "the movie was {}"]


def reviews() -> bytes:
    rows = [{"text": t.format(w), "label": label} for label, words in (("positive", POSITIVE),
                                                                        ("negative", NEGATIVE))
            for w in words for t in TEMPLATES]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _top(page) -> None:
    page.evaluate("window.scrollTo(0, 0)")  # full-page shots of a scrolled page repeat the sticky header


def _points(page, canvas: str) -> int:
    return int(page.get_attribute(canvas, "data-points") or 0)


def test_from_a_file_to_a_model_in_the_browser(server, page):
    shots = output_dir() / "e2e"
    shots.mkdir(exist_ok=True)
    _, key = server.tenant()
    sign_in(page, key)

    # Datasets: drop a file on the drop zone (a real drop event carrying the file)
    page.evaluate("""([name, text]) => {
        const dt = new DataTransfer();
        dt.items.add(new File([text], name, {type: "application/json"}));
        const zone = document.getElementById("dropzone");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", ["reviews.jsonl", reviews().decode()])
    page.wait_for_url(re.compile(r"/console/datasets/file-"))
    page.wait_for_selector("html[data-ready]")
    page.wait_for_selector("#valid-note")
    assert "40 examples" in page.inner_text("#valid-note")
    assert page.inner_text("#problem-count .v") == "0"
    assert int(page.get_attribute("#labels-chart", "data-points")) == 2  # two labels in the chart
    assert page.locator("#preview-table tbody tr").count() == 20
    _top(page)
    page.screenshot(path=str(shots / "01-dataset.png"), full_page=True)

    # Split into train/dev files, then go to the new-job form prefilled with them
    page.get_by_label("Dev %").fill("20")
    page.get_by_label("Test %").fill("0")
    page.get_by_role("button", name="Split into new files").click()
    page.get_by_role("link", name="Fine-tune on train, validate on dev").click()
    page.wait_for_url(re.compile(r"/console/jobs/new\?training_file=file-"))
    page.wait_for_selector("html[data-ready]")
    assert "reviews.train.jsonl" in page.locator("#training-file option:checked").inner_text()
    assert "reviews.dev.jsonl" in page.locator("#validation-file option:checked").inner_text()
    page.get_by_label("Base model").select_option("tiny-bert")
    page.get_by_label("Epochs").fill("8")
    page.get_by_label("Batch size").fill("4")
    page.get_by_label("Learning-rate multiplier").fill("5")
    page.locator("summary", has_text="More options").click()
    page.get_by_label("Log every N steps").fill("2")
    page.get_by_label("Seed").fill("1")
    page.get_by_role("button", name="Update estimate").click()
    page.wait_for_function("() => document.querySelector('#estimate-tokens') && "
                           "document.querySelector('#estimate dd:nth-of-type(3)').textContent === '8'")
    tokens = int(page.inner_text("#estimate-tokens").replace(",", ""))
    assert tokens > 8 * 32  # 32 training examples, several tokens each, 8 epochs
    _top(page)
    page.screenshot(path=str(shots / "02-new-job.png"), full_page=True)
    page.get_by_role("button", name="Start fine-tuning").click()
    page.wait_for_url(re.compile(r"/console/jobs/ftjob-"))
    page.wait_for_selector("html[data-ready]")
    # the page opens as the job is queued: the worker has yet to load the base model before the first logged step
    at_load = _points(page, "#loss-chart")

    # The job page: the loss curve gains points while the job trains, then the job succeeds
    page.wait_for_function("() => Number(document.getElementById('loss-chart').dataset.points) > 0 || "
                           "['failed', 'cancelled'].includes(document.getElementById('job-status').dataset.status)",
                           timeout=120_000)
    assert page.get_attribute("#job-status", "data-status") not in ("failed", "cancelled"), page.inner_text("main")
    first = _points(page, "#loss-chart")
    page.wait_for_function(f"() => Number(document.getElementById('loss-chart').dataset.points) > {first} || "
                           "document.getElementById('job-status').dataset.status === 'succeeded'", timeout=120_000)
    _top(page)
    page.screenshot(path=str(shots / "03-job-running.png"), full_page=True)
    page.wait_for_function("() => ['succeeded', 'failed', 'cancelled'].includes("
                           "document.getElementById('job-status').dataset.status)", timeout=180_000)
    assert page.get_attribute("#job-status", "data-status") == "succeeded", page.inner_text("#job-error")
    page.wait_for_selector("#fine-tuned-model a")
    loss, dev = _points(page, "#loss-chart"), _points(page, "#dev-chart")
    assert page.locator("#pause-button").is_hidden() and page.locator("#cancel-button").is_hidden()
    # The curve grew while the page was open, without a reload. (Not "after the first look": on a slow machine the
    # job can log its last step while it is still evaluating and saving, so the status still reads running.)
    assert loss > at_load, f"the loss curve did not move while the page was open: {at_load} -> {loss} points"
    # the curves show every point the job logged: train and dev loss, and two dev metrics per evaluation
    job_id = page.inner_text("#job-id")
    events = page.request.get(f"/v1/fine_tuning/jobs/{job_id}/events?limit=1000",
                              headers={"Authorization": f"Bearer {key}"}).json()["data"]
    logged = [e["data"] for e in events if e["type"] == "metrics"][::-1]
    points = [d for d in logged if "train_runtime" not in d]  # not the end-of-training summary
    assert loss == sum("train_loss" in d for d in points) + sum("eval_loss" in d for d in points)
    shown = re.compile(r"^eval_(?!.*(loss|runtime|per_second|_n|epoch)$)")
    dev_points = sum(1 for d in points for k, v in d.items() if shown.match(k) and isinstance(v, int | float))
    assert dev == dev_points and dev >= 4 and any("eval_accuracy" in d for d in logged), (loss, dev)
    assert page.locator("#checkpoints-table tbody tr").count() >= 1
    assert page.locator("#events-table tbody tr", has_text="successfully completed").count() == 1
    _top(page)
    page.screenshot(path=str(shots / "04-job-succeeded.png"), full_page=True)

    # The model: evaluation report and playground
    page.click("#fine-tuned-model a")
    page.wait_for_url(re.compile(r"/console/models/ft"))
    page.wait_for_selector("html[data-ready]")
    page.wait_for_selector("#metric-accuracy")
    assert page.locator("#per-class-table tbody tr").count() == 2
    assert page.locator("#confusion-table tbody tr").count() == 2
    model_id = page.inner_text("#model-id")
    assert model_id.startswith("ft:tiny-bert:") and model_id in page.inner_text("#curl-snippet")
    assert model_id in page.inner_text("#python-snippet")
    page.get_by_label("Text").fill("a great film")
    page.get_by_role("button", name="Predict").click()
    page.wait_for_selector("#predicted-label")
    assert page.inner_text("#predicted-label") in ("positive", "negative")
    assert page.locator(".scores li").count() == 2
    _top(page)
    page.screenshot(path=str(shots / "05-model.png"), full_page=True)

    # The usage it left behind shows on the account page
    page.goto("/console/account")
    page.wait_for_selector("html[data-ready]")
    page.wait_for_function("() => Number(document.getElementById('usage-model-chart').dataset.points) > 0")
    _top(page)
    page.screenshot(path=str(shots / "06-account.png"), full_page=True)
