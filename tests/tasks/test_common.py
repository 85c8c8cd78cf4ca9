import numpy as np

from tuneforge.tasks.base import split_outputs
from tuneforge.tasks.common import join_tokens, split_words
from tuneforge.tasks.ner import bio_to_spans
from tuneforge.tasks.qa import normalize_answer, squad_em_f1


def test_split_words_keeps_spans_and_splits_cjk():
    text = "Apple's CEO visited 北京 on Monday, 2024."
    words = split_words(text)
    assert [w for w, _, _ in words] == ["Apple's", "CEO", "visited", "北", "京", "on", "Monday", ",", "2024", "."]
    for w, s, e in words:
        assert text[s:e] == w


def test_split_words_mixed_cjk_and_latin():
    words = split_words("买了iPhone15手机")
    assert [w for w, _, _ in words] == ["买", "了", "iPhone15", "手", "机"]


def test_join_tokens_no_space_between_cjk():
    text, spans = join_tokens(["张", "三", "visited", "北", "京", "."])
    assert text == "张三 visited 北京 ."
    assert [text[s:e] for s, e in spans] == ["张", "三", "visited", "北", "京", "."]


def test_bio_to_spans_handles_broken_sequences_like_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-ORG", "I-PER"]
    assert bio_to_spans(tags) == [("PER", 0, 2), ("LOC", 3, 5), ("ORG", 5, 6), ("PER", 6, 7)]
    assert bio_to_spans(["B-X", "B-X"]) == [("X", 0, 1), ("X", 1, 2)]
    assert bio_to_spans(["O", "O"]) == []


def test_squad_normalization_and_scores():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert squad_em_f1("the Eiffel tower", ["Eiffel Tower"]) == (1.0, 1.0)
    em, f1 = squad_em_f1("Eiffel", ["Eiffel Tower", "tower"])
    assert em == 0.0 and abs(f1 - 2 / 3) < 1e-9
    assert squad_em_f1("nothing", ["Eiffel Tower"]) == (0.0, 0.0)
    # Chinese answers are compared by character
    em, f1 = squad_em_f1("北京市", ["北京"])
    assert em == 0.0 and abs(f1 - 0.8) < 1e-9


def test_split_outputs_trims_padding_only_for_per_token_outputs():
    token_logits = np.arange(2 * 4 * 3).reshape(2, 4, 3)
    rows = split_outputs(token_logits, [2, 4], per_token=True)
    assert rows[0][0].shape == (2, 3) and rows[1][0].shape == (4, 3)
    cls = np.ones((2, 5))
    rows = split_outputs(cls, [3, 1], per_token=False)
    assert rows[0][0].shape == (5,) and rows[1][0].shape == (5,)
