"""Explanations (integrated gradients on the embedding layer): complete (the word scores sum to the explained
logit's difference from the baseline, a small convergence delta), sub-word pieces summed into words, Chinese
explained character by character, NER explained per entity, a rejected input explained by its best known label,
and faithful on a model that learned which words decide (deleting the top-attributed word drops the predicted
probability far more than deleting a random one)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tuneforge import runs
from tuneforge.errors import ConfigError
from tuneforge.evaluation.explain import Explainer, comprehensiveness, delete_words, explain
from tuneforge.inference import load_predictor
from tuneforge.tasks import get_task

POSITIVE = ["good", "great", "love", "fun"]
NEGATIVE = ["bad", "awful", "hate", "boring"]
TRAIN_STEPS, LR = 400, 1e-3
SENTIMENTS = ["negative", "neutral", "positive"]
FILLER = ["the", "movie", "film", "this", "it", "was", "is", "paris", "london", "city", "river", "my", "your",
          "with", "for", "on", "in", "of", "we", "they"]


def make_run(tmp: Path, base: Path, task_name: str, labels: list[str], *, name: str, seed: int = 0,
             extra: dict | None = None, train_rows: list[tuple[str, int]] | None = None) -> Path:
    """A finished ``full`` run folder over the tiny BERT; with ``train_rows`` (text, label index) its classifier
    is trained on them first (a plain torch loop: a second or two)."""
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    model = get_task(task_name).build_model(base, labels, multi_label=False)
    tok = AutoTokenizer.from_pretrained(str(base))
    if train_rows:
        opt = torch.optim.AdamW(model.parameters(), lr=LR)
        model.train()
        rng = random.Random(seed)
        for _ in range(TRAIN_STEPS):
            batch = rng.sample(train_rows, 16)
            enc = tok([t for t, _ in batch], padding=True, return_tensors="pt")
            loss = model(**enc, labels=torch.tensor([y for _, y in batch])).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    out = tmp / name
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    runs.write_manifest(out, {"name": name, "task": task_name, "labels": labels, "max_length": 64, "stride": 16,
                              "multi_label": False, "method": "full",
                              "base_model": {"name": "tiny", "path": str(base)}, **(extra or {})})
    return out


def sentiment_rows(n: int, seed: int) -> list[tuple[str, int]]:
    """Sentences of neutral filler words (label 1, neutral), or with one sentiment word at a random place among
    them (0 negative, 2 positive): each class needs its evidence, so a sentence of padding reads as neutral."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        y = i % 3
        words = rng.sample(FILLER, 6)
        if y != 1:
            words.insert(rng.randrange(7), rng.choice(POSITIVE if y else NEGATIVE))
        rows.append((" ".join(words), y))
    return rows


@pytest.fixture(scope="module")
def cls_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("explain"), tiny_bert, "classification", ["negative", "positive"],
                    name="cls", seed=1)


@pytest.fixture(scope="module")
def trained_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("explain"), tiny_bert, "classification", SENTIMENTS,
                    name="trained", train_rows=sentiment_rows(600, seed=0))


def _logit(predictor, ids: list[int], target: int) -> float:
    import torch

    with torch.inference_mode():
        out = predictor.model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return float(out.logits[0, target])


def test_attributions_sum_to_the_logit_difference_from_the_baseline(trained_run):
    p = load_predictor(trained_run)
    text = "this movie was great"
    [e] = explain(p, [text], steps=200)
    assert e.label == p.predict([text])[0]["label"]
    target = p.labels.index(e.label)
    ids = p.tokenizer(text)["input_ids"]
    baseline = [ids[0], *[p.tokenizer.pad_token_id] * (len(ids) - 2), ids[-1]]  # [CLS] pads [SEP]
    difference = _logit(p, ids, target) - _logit(p, baseline, target)
    assert e.output == pytest.approx(_logit(p, ids, target), abs=1e-5)
    total = sum(w.score for w in e.attributions)
    assert abs(e.convergence_delta) < 0.01
    assert total == pytest.approx(difference, abs=0.01)
    assert total - difference == pytest.approx(e.convergence_delta, abs=1e-4)
    assert [w.token for w in e.attributions] == ["this", "movie", "was", "great"]
    assert max(abs(w.score) for w in e.attributions) > 0.1
    # the score is the served probability of the label
    assert e.score == pytest.approx(p.predict([text])[0]["score"], abs=1e-5)
    # another label on request: its own logit, its own probability
    [other] = explain(p, [text], label="negative", steps=200)
    assert other.label != e.label and other.score == pytest.approx(p.predict([text])[0]["scores"][other.label],
                                                                   abs=1e-5)
    assert sum(w.score for w in other.attributions) == pytest.approx(other.output - other.baseline_output, abs=0.01)


def test_sub_word_pieces_are_summed_into_their_word(cls_run):
    p = load_predictor(cls_run)
    text = "walking quickly, the movie"
    pieces = p.tokenizer.tokenize(text)
    assert len(pieces) > 6 and any(t.startswith("##") for t in pieces)  # the tiny vocab spells words in pieces
    [e] = explain(p, [text])
    assert [w.token for w in e.attributions] == ["walking", "quickly", ",", "the", "movie"]
    assert [(w.start, w.end) for w in e.attributions] == [(0, 7), (8, 15), (15, 16), (17, 20), (21, 26)]
    # the word scores keep the pieces' total: still complete
    assert sum(w.score for w in e.attributions) == pytest.approx(e.output - e.baseline_output, abs=0.01)
    # more steps, a smaller (or equal) error
    [fine] = explain(p, [text], steps=200)
    assert abs(fine.convergence_delta) <= abs(e.convergence_delta) + 1e-6


def test_chinese_is_explained_character_by_character(cls_run):
    p = load_predictor(cls_run)
    text = "今天股市大涨，很好"
    [e] = explain(p, [text])
    assert [w.token for w in e.attributions] == list("今天股市大涨，很好")
    assert all(text[w.start:w.end] == w.token for w in e.attributions)
    assert sum(w.score for w in e.attributions) == pytest.approx(e.output - e.baseline_output, abs=0.01)


def test_a_sentence_pair_is_explained_in_both_texts(cls_run):
    p = load_predictor(cls_run)
    [e] = explain(p, [{"text": "a good movie", "text_pair": "very bad"}])
    assert [(w.token, w.segment, w.start) for w in e.attributions] == \
        [("a", 0, 0), ("good", 0, 2), ("movie", 0, 7), ("very", 1, 0), ("bad", 1, 5)]
    assert sum(w.score for w in e.attributions) == pytest.approx(e.output - e.baseline_output, abs=0.01)
    assert e.to_json()["attributions"][3] == {"token": "very", "score": round(e.attributions[3].score, 6),
                                              "start": 0, "end": 4, "segment": 1}


def test_word_aggregation_splits_an_unspaced_chinese_word_from_a_sentencepiece_tokenizer():
    from tuneforge.evaluation.explain import _word_scores

    # a SentencePiece tokenizer makes one word of "很好看": a bare marker, then pieces "很" and "好看"
    offsets = [(0, 0), (0, 0), (0, 1), (1, 3), (0, 0)]
    words = _word_scores(["很好看", ""], np.array([0.0, 0.3, 1.0, 2.0, 0.0]), [None, 0, 0, 0, None],
                         [None, 0, 0, 0, None], offsets)
    assert [(w.token, round(w.score, 6)) for w in words] == [("很", 1.3), ("好", 1.0), ("看", 1.0)]


def test_a_rejected_input_explains_its_best_known_label(tiny_bert, tmp_path):
    policy = {"confidence": {"oos_label": "out_of_scope", "temperature": 2.0, "calibrated": True,
                             "reject": "msp", "target": 0.95, "thresholds": {"msp": 0.99, "energy": 0.0},
                             "dev": {}}}
    run = make_run(tmp_path, tiny_bert, "classification", ["negative", "positive"], name="reject", seed=1,
                   extra=policy)
    p = load_predictor(run)
    [served] = p.predict(["a good movie"])
    assert served["rejected"] and served["label"] == "out_of_scope"
    [e] = explain(p, ["a good movie"])
    assert e.label == served["best_label"]
    assert e.score == pytest.approx(served["score"], abs=1e-5)  # calibrated, as served
    with pytest.raises(ConfigError, match="out_of_scope.*not a label"):
        explain(p, ["a good movie"], label="out_of_scope")


def test_ner_is_explained_per_entity(tiny_bert, tmp_path):
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    run = make_run(tmp_path, tiny_bert, "ner", labels, name="ner", seed=2)
    p = load_predictor(run)
    text = "john lives in paris"
    [served] = p.predict([text])
    assert served["entities"], "the untrained tiny head predicts some entities"
    [explained] = explain(p, [text])
    assert [(x.label, x.entity["start"], x.entity["end"]) for x in explained] == \
        [(e["type"], e["start"], e["end"]) for e in served["entities"]]
    for x in explained:
        assert [w.token for w in x.attributions] == ["john", "lives", "in", "paris"]
        assert sum(w.score for w in x.attributions) == pytest.approx(x.output - x.baseline_output, abs=0.02)
        assert abs(x.convergence_delta) < 0.02
    kind = served["entities"][0]["type"]
    assert {x.label for x in explain(p, [text], label=kind)[0]} == {kind}
    with pytest.raises(ConfigError, match="entity type"):
        explain(p, [text], label="ORG")


def test_qa_and_bad_steps_are_refused(tiny_bert, tmp_path, cls_run):
    run = make_run(tmp_path, tiny_bert, "qa", ["start", "end"], name="qa")
    with pytest.raises(ConfigError, match="classification and NER"):
        Explainer(load_predictor(run))
    with pytest.raises(ConfigError, match="steps"):
        explain(load_predictor(cls_run), ["a good movie"], steps=0)


def test_deleting_words_closes_up_the_text():
    from tuneforge.evaluation.explain import WordScore

    text = "a gorgeous, witty movie"
    assert delete_words(text, [WordScore("gorgeous", 1.0, 2, 10), WordScore("witty", 0.5, 12, 17)]) == "a , movie"
    assert delete_words("今天很好", [WordScore("很", 1.0, 2, 3)]) == "今天好"


def test_deleting_the_top_attributed_word_drops_the_prediction_more_than_a_random_word(trained_run):
    p = load_predictor(trained_run)
    rows = [r for r in sentiment_rows(36, seed=99) if r[1] != 1]  # sentences with a sentiment word
    accuracy = np.mean([pred["label"] == p.labels[y] for pred, (_, y) in
                        zip(p.predict([t for t, _ in rows]), rows, strict=True)])
    assert accuracy >= 0.9, "the tiny model learned the task"
    texts = [t for t, _ in rows]
    results = [comprehensiveness(p, t, e, 1, seed=i) for i, (t, e) in enumerate(zip(texts, explain(p, texts),
                                                                                    strict=True))]
    ig, rnd = np.mean([r["ig"] for r in results]), np.mean([r["random"] for r in results])
    assert ig > 0.3 and ig > rnd + 0.2, (ig, rnd)
    # the top word is the sentiment word in almost every sentence
    tops = [max(e.attributions, key=lambda w: w.score).token for e in explain(p, texts)]
    assert np.mean([t in POSITIVE + NEGATIVE for t in tops]) >= 0.8


@pytest.mark.parametrize("method", ["lora"])
def test_a_parameter_efficient_run_is_explained_as_served(tmp_path, tiny_bert, cls_rows, method):
    from rich.console import Console

    from tests.conftest import write_jsonl
    from tuneforge.training import make_config, train

    data = write_jsonl(tmp_path / "train.jsonl", cls_rows)
    cfg = make_config({"task": "classification", "data": str(data), "base_model": str(tiny_bert),
                       "output": str(tmp_path / "run"), "epochs": 1, "batch_size": 4, "learning_rate": 1e-3,
                       "precision": "fp32", "method": method})
    result = train(cfg, console=Console(quiet=True))
    p = load_predictor(result.output)
    [e] = explain(p, ["a good movie"], steps=100)
    [served] = p.predict(["a good movie"])
    assert e.label == served["label"] and e.score == pytest.approx(served["score"], abs=1e-5)
    assert [w.token for w in e.attributions] == ["a", "good", "movie"]
    assert sum(w.score for w in e.attributions) == pytest.approx(e.output - e.baseline_output, abs=0.02)
