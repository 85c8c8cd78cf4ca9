"""Continual re-training: the replay sample, the EWC penalty and the champion / challenger rule."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from tuneforge.errors import ConfigError
from tuneforge.training.continual import compare_metrics, mix_replay, replay_count, replay_sample
from tuneforge.training.continual.compare import write_comparison
from tuneforge.training.continual.ewc import EWCCallback, fisher_diagonal
from tuneforge.training.continual.ewc import ewc_penalty as penalty


def rows(counts: dict[str, int]) -> list[dict]:
    return [{"text": f"{label} {i}", "label": label} for label, n in counts.items() for i in range(n)]


# ------------------------------------------------------------------------------------------------------ replay
def test_replay_is_a_fraction_of_the_new_data_capped_by_the_old():
    assert replay_count(0.3, 1000, 5000) == 300
    assert replay_count(0.1, 45, 5000) == 4  # round(4.5) to even
    assert replay_count(0.3, 1000, 120) == 120
    assert replay_count(0.0, 1000, 120) == 0
    with pytest.raises(ConfigError, match="replay"):
        replay_count(-0.1, 10, 10)


def test_replay_sample_is_stratified_deterministic_and_keeps_every_class():
    old = rows({"a": 600, "b": 300, "c": 90, "rare": 10})
    picked = replay_sample(old, 100, seed=7)
    assert len(picked) == len(set(picked)) == 100 and picked == sorted(picked)
    by_label = Counter(old[i]["label"] for i in picked)
    assert by_label == {"a": 60, "b": 30, "c": 9, "rare": 1}  # proportional, largest remainders
    assert replay_sample(old, 100, seed=7) == picked
    assert replay_sample(old, 100, seed=8) != picked
    few = Counter(old[i]["label"] for i in replay_sample(old, 5, seed=0))
    assert set(few) == {"a", "b", "c", "rare"} and sum(few.values()) == 5  # every class while the budget allows
    assert replay_sample(old, 2000, seed=0) == list(range(len(old)))


def test_mix_holds_the_new_rows_and_the_replay_sample():
    new, old = rows({"x": 40}), rows({"a": 50, "b": 50})
    mix = mix_replay(new, old, fraction=0.25, seed=1)
    assert (mix.n_new, mix.n_replay, len(mix.examples)) == (40, 10, 50)
    assert Counter(ex["label"] for ex in mix.examples) == {"x": 40, "a": 5, "b": 5}
    assert mix.summary()["replayed_per_label"] == {"a": 5, "b": 5}
    assert mix_replay(new, old, fraction=0.25, seed=1).examples == mix.examples


# --------------------------------------------------------------------------------------------------------- EWC
def _tiny_classifier():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=20, max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(cfg)


def _features(n: int = 12) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(1, 50, (6,), generator=g).tolist(), "attention_mask": [1] * 6,
             "labels": i % 2} for i in range(n)]


def _collate(batch: list[dict]) -> dict:
    return {k: torch.tensor([b[k] for b in batch]) for k in batch[0]}


def test_ewc_penalty_is_zero_at_the_old_weights_and_grows_away_from_them():
    model = _tiny_classifier()
    fisher = fisher_diagonal(model, _features(), _collate, max_examples=12)
    assert fisher.examples == 12 and len(fisher) > 0
    mean = sum(float(f.sum()) for f in fisher.fisher.values()) / sum(f.numel() for f in fisher.fisher.values())
    assert mean == pytest.approx(1.0)  # normalised
    assert penalty(model, fisher, 1.0) == 0.0
    values = []
    for step in (0.01, 0.02, 0.04):
        moved = _tiny_classifier()
        with torch.no_grad():
            for p in moved.parameters():
                p.add_(step)
        values.append(penalty(moved, fisher, 1.0))
    assert 0 < values[0] < values[1] < values[2]
    assert values[2] == pytest.approx(4 * values[1], rel=1e-3)  # quadratic in the distance
    assert penalty(moved, fisher, 3.0) == pytest.approx(3 * values[2])


def test_ewc_callback_adds_the_penalty_gradient():
    model = _tiny_classifier()
    fisher = fisher_diagonal(model, _features(), _collate, max_examples=12)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    batch = _collate(_features(4))
    name = "bert.encoder.layer.0.output.dense.weight"
    param = dict(model.named_parameters())[name]
    assert "classifier.weight" not in fisher.fisher and "bert.pooler.dense.weight" not in fisher.fisher  # the head

    def grad() -> torch.Tensor:
        model.zero_grad()
        model(**batch).loss.backward()
        return param.grad.detach().clone()

    model.eval()
    plain = grad()
    cb = EWCCallback(fisher, lam=2.0)
    assert cb.attach(model) > 0
    with_ewc = grad()
    expected = 2.0 * fisher.fisher[name] * (param.detach() - fisher.theta[name])
    assert torch.allclose(with_ewc - plain, expected, atol=1e-6)
    cb.detach()
    assert torch.allclose(grad(), plain)


# ---------------------------------------------------------------------------------------- champion / challenger
def metrics(acc: float, recalls: dict[str, float]) -> dict:
    return {"accuracy": acc, "n": 100,
            "per_class": {k: {"precision": r, "recall": r, "f1": r, "support": 50} for k, r in recalls.items()}}


def test_a_better_model_is_promoted_and_a_worse_one_is_not():
    champion = metrics(0.80, {"neg": 0.80, "pos": 0.80})
    better = compare_metrics(champion, metrics(0.85, {"neg": 0.84, "pos": 0.86}), metric="accuracy")
    assert better.promote and better.decision == "promote"
    assert better.per_class["neg"]["delta"] == pytest.approx(0.04)
    worse = compare_metrics(champion, metrics(0.78, {"neg": 0.79, "pos": 0.77}), metric="accuracy")
    assert not worse.promote and "not better" in worse.reasons[0]
    tie = compare_metrics(champion, metrics(0.80, {"neg": 0.80, "pos": 0.80}), metric="accuracy")
    assert not tie.promote
    first = compare_metrics(None, metrics(0.6, {}), metric="accuracy")
    assert first.promote and "first champion" in first.reasons[0]


def test_a_class_dropping_beyond_the_margin_blocks_promotion(tmp_path):
    champion = metrics(0.80, {"neg": 0.90, "pos": 0.70})
    challenger = metrics(0.84, {"neg": 0.87, "pos": 0.81})  # neg -0.03
    blocked = compare_metrics(champion, challenger, metric="accuracy", margin=0.02)
    assert not blocked.promote and blocked.per_class["neg"]["dropped"]
    assert any("neg" in r and "margin" in r for r in blocked.reasons)
    assert compare_metrics(champion, challenger, metric="accuracy", margin=0.05).promote
    lost = compare_metrics(champion, {"accuracy": 0.9, "per_class": {"pos": {"recall": 0.95, "support": 50}}},
                           metric="accuracy")
    assert not lost.promote and lost.per_class["neg"]["challenger"] == 0.0  # a class it can no longer predict
    js, md = write_comparison(blocked, tmp_path)
    assert '"decision": "keep as candidate"' in js.read_text()
    assert "| neg | 0.9000 | 0.8700 | -0.0300 | ⚠ dropped |" in md.read_text()


def test_slices_follow_the_same_margin():
    champion = {"accuracy": 0.8, "slices": {"length": {"short": {"accuracy": 0.9}, "long": {"accuracy": 0.7}}}}
    challenger = {"accuracy": 0.85, "slices": {"length": {"short": {"accuracy": 0.8}, "long": {"accuracy": 0.9}}}}
    c = compare_metrics(champion, challenger, metric="accuracy", margin=0.02)
    assert not c.promote and c.slices["length=short"]["dropped"] and not c.slices["length=long"]["dropped"]


def test_feedback_becomes_labelled_rows(tmp_path):
    from tuneforge.cli.retrain import feedback_rows

    records = [{"message": "where is my card", "helpful": False, "intent": "fees", "correct_intent": "card_arrival"},
               {"message": "what does it cost", "helpful": True, "intent": "fees"},
               {"message": "hello", "helpful": False, "intent": "fees"},
               {"message": "new thing", "helpful": False, "correct_intent": "unknown_intent"}]
    path = tmp_path / "feedback.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert feedback_rows(path, ["card_arrival", "fees"]) == [{"text": "where is my card", "label": "card_arrival"},
                                                            {"text": "what does it cost", "label": "fees"}]
    assert feedback_rows(tmp_path, None)[-1] == {"text": "new thing", "label": "unknown_intent"}  # a bundle folder
    with pytest.raises(ConfigError, match="does not exist"):
        feedback_rows(tmp_path / "nope", None)
