"""OpenAI's epoch rule and the billable token figure of ``data check``."""

from __future__ import annotations

import pytest

from tests.tasks.test_generation_template import conv, tiny_tokenizer
from tuneforge.tasks.generation.budget import auto_epochs, token_summary
from tuneforge.tasks.generation.template import render_dataset


@pytest.mark.parametrize(("n", "epochs"), [(1, 25), (10, 10), (30, 4), (34, 3), (1000, 3), (8333, 3), (8334, 2),
                                           (20_000, 1), (100_000, 1)])
def test_auto_epochs_follow_openai(n, epochs):
    assert auto_epochs(n) == epochs


def test_auto_epochs_refuses_an_empty_file():
    with pytest.raises(ValueError):
        auto_epochs(0)


def test_token_summary_counts_truncation_and_billable_tokens():
    tok = tiny_tokenizer()
    examples = [{"messages": conv(("user", "Say hello."), ("assistant", "Hello there!"))},
                {"messages": conv(("user", "Where is the Eiffel Tower? " * 8), ("assistant", "Paris."))}]
    rendered = render_dataset(tok, examples, max_length=40)
    s = token_summary(rendered, epochs=3, max_length=40)
    assert s["examples"] == 2 and s["over_max_length"] == 1 and s["untrainable"] == 1
    assert s["total_tokens"] == sum(rendered.lengths) > s["tokens_after_truncation"]
    assert s["tokens_after_truncation"] == rendered.lengths[0] + 40
    assert s["billable_tokens"] == 3 * s["tokens_after_truncation"]
