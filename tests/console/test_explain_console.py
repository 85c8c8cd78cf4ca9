"""The playground's Explain toggle: a classifier's words shaded green (for the label) and red (against it) by
their attribution, with a legend and the convergence delta, in English and Chinese, passing the accessibility
checks; the toggle is not offered for a QA model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service_support import install_model

A11Y = (Path(__file__).parent / "a11y.js").read_text(encoding="utf-8")


def _open(page, server, key: str, path: str) -> None:
    page.goto(f"{server.url}/console/login")
    page.evaluate("k => sessionStorage.setItem('tf_key', k)", key)
    page.goto(f"{server.url}{path}")
    page.wait_for_selector("html[data-ready]")


@pytest.mark.parametrize(("lang", "legend", "heading"), [("en", "for the label", "Why "),
                                                         ("zh", "支持该标签", "为何是 ")])
def test_explain_shades_the_words_with_a_legend(page, server, tiny_bert, lang, legend, heading):
    _, key = server.tenant()
    model = install_model(server.app, key, tiny_bert, name=f"explain-{lang}", seed=3, noise=0.05)
    _open(page, server, key, f"/console/models/{model}?lang={lang}")
    assert page.is_visible("#play-explain")
    page.fill("#play-text", "a good movie")
    page.check("#play-explain")
    page.click("#play-button")
    page.wait_for_selector("#explanation")
    words = page.locator("#explanation .attr")
    assert words.all_inner_texts() == ["a", "good", "movie"]
    backgrounds = [words.nth(i).evaluate("e => e.style.background") for i in range(3)]
    assert all(b.startswith("rgba(22, 163, 74") or b.startswith("rgba(220, 38, 38") for b in backgrounds)
    assert legend in page.inner_text("#explanation .legend")
    assert page.inner_text("#explanation h3").startswith(heading)
    assert not page.evaluate(A11Y)
    page.uncheck("#play-explain")  # without the toggle: a plain prediction
    page.click("#play-button")
    page.wait_for_selector("#explanation", state="detached")
    assert page.is_visible("#predicted-label")


def test_no_explain_toggle_for_qa(page, server, tiny_bert):
    _, key = server.tenant()
    model = install_model(server.app, key, tiny_bert, "qa", name="explain-qa")
    _open(page, server, key, f"/console/models/{model}")
    assert not page.is_visible("#play-explain")
