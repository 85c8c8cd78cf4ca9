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


def test_check_tokens_names_the_lines_over_max_length_and_bills_by_openai_epochs():
    from tuneforge.tasks.generation.budget import check_tokens

    tok = tiny_tokenizer()
    examples = [{"messages": conv(("user", "Say hello."), ("assistant", "Hello there!"))} for _ in range(11)]
    examples.append({"messages": conv(("user", "Where is the Eiffel Tower? " * 8), ("assistant", "Paris."))})
    rendered = render_dataset(tok, examples, max_length=40)
    lines = list(range(1, 13))
    s, too_long = check_tokens(tok, examples, lines, file="chat.jsonl", max_length=40, epochs="auto", context=512)
    assert too_long == [] and s["kind"] == "sft" and s["examples"] == 12
    assert s["over_max_length"] == 1 and s["over_max_length_lines"] == [12] and s["untrainable_lines"] == [12]
    assert s["epochs"] == auto_epochs(12) == 9 and s["epochs_rule"] == "auto"
    assert s["billable_tokens"] == 9 * s["tokens_after_truncation"] == 9 * sum(len(f["input_ids"])
                                                                               for f in rendered.features)
    s, _ = check_tokens(tok, examples, lines, file="chat.jsonl", max_length=40, epochs=2.5)
    assert s["epochs"] == 2.5 and s["billable_tokens"] == round(2.5 * s["tokens_after_truncation"])


def test_check_tokens_refuses_conversations_longer_than_the_context_per_line():
    from tuneforge.tasks.generation.budget import check_tokens

    tok = tiny_tokenizer()
    short = {"messages": conv(("user", "Say hello."), ("assistant", "Hello there!"))}
    long = {"messages": conv(("user", "Where is the Eiffel Tower? " * 30), ("assistant", "Paris."))}
    _, too_long = check_tokens(tok, [short, long, short, long], [1, 2, 3, 7], file="chat.jsonl", max_length=64,
                               context=100)
    assert [(p.line, p.field) for p in too_long] == [(2, "messages"), (7, "messages")]
    assert all(p.message.startswith("context_length_exceeded: ") and "(100 tokens)" in p.message for p in too_long)


def test_check_tokens_counts_both_answers_of_a_preference_pair():
    from tuneforge.tasks.generation.budget import check_tokens
    from tuneforge.tasks.generation.template import render_pair

    tok = tiny_tokenizer()
    pair = {"prompt": [{"role": "user", "content": "Say hello."}],
            "chosen": [{"role": "assistant", "content": "Hello there!"}],
            "rejected": [{"role": "assistant", "content": "Go away, I am busy with the Eiffel Tower."}]}
    chosen, rejected = render_pair(tok, pair)
    s, too_long = check_tokens(tok, [pair] * 3, [1, 2, 3], file="p.jsonl", max_length=len(chosen.input_ids),
                               epochs=1, context=len(rejected.input_ids) - 1)
    assert s["kind"] == "preference" and s["total_tokens"] == 3 * (len(chosen.input_ids) + len(rejected.input_ids))
    assert s["over_max_length_lines"] == [1, 2, 3] and s["tokens_after_truncation"] == 6 * len(chosen.input_ids)
    assert [p.line for p in too_long] == [1, 2, 3]  # the longer answer is over the context


def test_resolve_epochs():
    from tuneforge.tasks.generation.budget import resolve_epochs

    assert resolve_epochs("auto", 20) == 5 and resolve_epochs(2, 20) == 2.0
    with pytest.raises(ValueError):
        resolve_epochs(0, 20)
