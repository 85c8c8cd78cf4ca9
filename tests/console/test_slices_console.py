"""The model page shows an evaluation's fairness slices (flagged ones marked, fairlearn's differences) and its
robustness table, in English and Chinese. The API's answers for the model are given by the test (route
interception): the page is what is under test, ``read_evaluation`` has its own tests."""

from __future__ import annotations

import json
from typing import Any

from tests.browser import sign_in

MODEL = "ft:tiny-bert:acme:slices"
EVALUATION = {
    "object": "model.evaluation", "model": MODEL, "task": "classification", "labels": ["neg", "pos"],
    "multi_label": False, "max_length": 128, "base_model": "tiny-bert", "method": "full",
    "training": {"steps": 4, "final_loss": 0.69},
    "evaluation": {
        "name": "dev", "metrics": {"accuracy": 0.6, "n": 10}, "per_class": None, "confusion_matrix": None,
        "report_markdown": "# x",
        "slices": {"report": "test", "slices": {
            "length": {"short": {"accuracy": 0.8, "n": 5, "gap": 0.2, "flagged": False},
                       "long": {"accuracy": 0.4, "n": 5, "gap": -0.2, "flagged": True}}},
            "summary": {"length": {"metric": "accuracy", "overall": 0.6, "difference": 0.4, "worst": "long",
                                   "flagged": ["long"], "min_gap": 0.05, "positive_label": "pos",
                                   "demographic_parity_difference": 0.2, "equalized_odds_difference": 0.5}}},
        "robustness": {"report": "test", "metric": "accuracy", "seed": 0, "perturbations": {
            "typos": {"original": 0.6, "perturbed": 0.5, "drop": 0.1, "changed": 9, "n": 10},
            "traditional": {"skipped": "no simplified/traditional converter is installed (opencc or zhconv)"}}},
    },
}


def _serve_model(page: Any) -> None:
    def fulfil(route: Any) -> None:
        url = route.request.url
        if url.endswith("/evaluation"):
            body: dict[str, Any] = EVALUATION
        else:
            body = {"id": MODEL, "object": "model", "created": 0, "owned_by": "acme", "task": "classification",
                    "base_model": "tiny-bert"}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route("**/v1/models/ft**", fulfil)


def test_the_model_page_shows_slices_and_robustness_in_both_languages(page, server):
    _, key = server.tenant()
    sign_in(page, key)
    _serve_model(page)
    page.goto(f"/console/models/{MODEL}")
    page.wait_for_selector("#slice-length tbody tr")
    rows = page.locator("#slice-length tbody tr")
    assert rows.count() == 2
    assert "long" in rows.nth(1).inner_text() and "-0.2000" in rows.nth(1).inner_text()
    assert "below the overall figure" in rows.nth(1).inner_text()
    assert "below the overall figure" not in rows.nth(0).inner_text()
    text = page.locator("#slices-box").inner_text()
    assert "demographic parity difference 0.2000" in text and "equalized-odds difference 0.5000" in text
    robust = page.locator("#robust-table tbody").inner_text()
    assert "Typos" in robust and "9 / 10" in robust and "+0.1000" in robust
    assert "skipped: no simplified/traditional converter" in robust
    page.goto(f"/console/models/{MODEL}?lang=zh")
    page.wait_for_selector("#slice-length tbody tr")
    assert "分组评估" in page.locator("#slices-h").inner_text()
    assert "低于总体" in page.locator("#slice-length").inner_text()
    assert "拼写错误" in page.locator("#robust-table").inner_text()
