"""Classification features of a huge input are made from a prefix (never the whole text tokenized), and are the
very features the whole text gives: ids, truncation count, pairs and the fallback for prefixes with few tokens.
(Before, a huge sentence pair made the tokenizer's longest_first truncation abort the whole process.)"""

from __future__ import annotations

from typing import Any

from tests.conftest import RecordingTokenizer
from tuneforge.tasks import get_task


def _whole(tok: Any, examples: list[dict], max_length: int) -> list[list[int]]:
    pairs = [ex.get("text_pair") for ex in examples]
    if any(p is not None for p in pairs):
        enc = tok([ex["text"] for ex in examples], [p or "" for p in pairs], truncation="longest_first",
                  max_length=max_length)
    else:
        enc = tok([ex["text"] for ex in examples], truncation=True, max_length=max_length)
    return enc["input_ids"]


def test_huge_inputs_are_encoded_from_a_prefix_with_identical_features(tiny_bert) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    task = get_task("classification")
    huge = "a good movie with great acting " * 5_000  # 155,000 characters
    cases = [
        [{"text": huge, "label": None}, {"text": "short one", "label": None}],
        [{"text": "y" + " " * 3_000 + "good " * 300, "label": None}],  # the prefix is blanks: the whole text is used
        # pairs below the cut (64 tokens x 16 characters per side) are untouched
        [{"text": huge[:1_000], "text_pair": huge[:900], "label": None}, {"text": "x", "text_pair": "y z"}],
    ]
    for examples in cases:
        rec = RecordingTokenizer(tok)
        enc = task.encode(examples, rec, [], max_length=64, with_labels=False)
        assert [f["input_ids"] for f in enc.features] == _whole(tok, examples, 64)
        whole_truncated = task.encode(examples, tok, [], max_length=64, with_labels=False).truncated
        assert enc.truncated == whole_truncated
    rec = RecordingTokenizer(tok)
    task.encode(cases[0], rec, [], max_length=64, with_labels=False)
    assert rec.longest <= 64 * 16, f"tokenized an input of {rec.longest:,} characters"


def test_a_huge_sentence_pair_is_encoded_from_prefixes(tiny_bert) -> None:
    """The tokenizer's own longest_first truncation of a 60,000 + 40,000 character pair runs out of memory (it
    aborted the process before); from prefixes it is a normal, full-length feature with both sides present."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    huge = "a good movie with great acting " * 2_000
    rec = RecordingTokenizer(tok)
    enc = get_task("classification").encode([{"text": huge, "text_pair": huge[:40_000], "label": None}], rec, [],
                                            max_length=64, with_labels=False)
    (f,) = enc.features
    assert len(f["input_ids"]) == 64 and f["input_ids"].count(tok.sep_token_id) == 2
    assert enc.truncated == 1
    assert rec.longest <= 64 * 16
