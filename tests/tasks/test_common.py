import numpy as np

from tuneforge.tasks.base import split_outputs
from tuneforge.tasks.common import join_tokens, split_words
from tuneforge.tasks.ner import bio_to_spans
from tuneforge.tasks.ner.task import bio_viterbi
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


LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def _probs(rows: list[list[float]]) -> np.ndarray:
    p = np.asarray(rows, dtype=float)
    return p / p.sum(1, keepdims=True)


def test_bio_viterbi_repairs_what_argmax_breaks():
    # argmax: O I-LOC I-LOC B-PER I-LOC -> the stray I-LOCs become B-LOC I-LOC, the I-LOC after B-PER an I-PER
    p = _probs([[0.9, 0.02, 0.04, 0.02, 0.02],
                [0.1, 0.35, 0.45, 0.05, 0.05],
                [0.1, 0.05, 0.75, 0.05, 0.05],
                [0.1, 0.05, 0.05, 0.75, 0.05],
                [0.1, 0.05, 0.45, 0.05, 0.35]])
    assert [LABELS[i] for i in p.argmax(1)] == ["O", "I-LOC", "I-LOC", "B-PER", "I-LOC"]
    assert [LABELS[i] for i in bio_viterbi(p, LABELS)] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    # a sentence may not start inside an entity
    assert LABELS[bio_viterbi(_probs([[0.1, 0.2, 0.6, 0.05, 0.05]]), LABELS)[0]] == "B-LOC"


def test_bio_viterbi_keeps_a_valid_argmax_and_is_always_valid():
    rng = np.random.default_rng(0)
    valid = _probs([[0.8, 0.05, 0.05, 0.05, 0.05], [0.1, 0.7, 0.1, 0.05, 0.05], [0.1, 0.1, 0.7, 0.05, 0.05]])
    assert list(bio_viterbi(valid, LABELS)) == list(valid.argmax(1))
    assert len(bio_viterbi(np.zeros((0, 5)), LABELS)) == 0
    for _ in range(200):
        tags = [LABELS[i] for i in bio_viterbi(rng.dirichlet(np.ones(5) * 0.3, size=8), LABELS)]
        for prev, cur in zip(["O", *tags], tags, strict=False):
            assert not cur.startswith("I-") or prev[2:] == cur[2:], tags


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
