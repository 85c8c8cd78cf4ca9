"""Generation metrics: OpenAI's names, SQuAD EM/F1, ROUGE-L, log-probabilities and preference accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from tuneforge.tasks.generation.metrics import (
    TokenStats,
    named_token_metrics,
    preference_accuracy,
    rouge_l,
    sequence_logprobs,
    text_scores,
    token_stats,
)


def test_named_token_metrics_use_openai_names():
    stats = TokenStats(loss_sum=6.0, tokens=4, correct=3)
    assert named_token_metrics(stats, "train") == {"train_loss": 1.5, "train_mean_token_accuracy": 0.75,
                                                    "train_perplexity": pytest.approx(math.exp(1.5))}
    assert set(named_token_metrics(stats, "full_valid")) == {"full_valid_loss", "full_valid_mean_token_accuracy",
                                                             "full_valid_perplexity"}
    with pytest.raises(ValueError):
        named_token_metrics(stats, "test")
    assert math.isnan(TokenStats().loss)


def test_token_stats_shift_labels_by_one():
    # position t predicts label t + 1: logits favour token 2 at position 0 and token 0 at position 1
    logits = torch.tensor([[[0.0, 0.0, 9.0], [9.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[-100, 2, 1]])
    stats = token_stats(logits, labels)
    assert stats.tokens == 2 and stats.correct == 1
    expected = -(torch.log_softmax(logits[0, 0], -1)[2] + torch.log_softmax(logits[0, 1], -1)[1]).item()
    assert stats.loss_sum == pytest.approx(expected, rel=1e-6)
    assert token_stats(logits, torch.full((1, 3), -100)).tokens == 0


def test_sequence_logprobs_sum_the_learned_tokens_per_row():
    logits = torch.randn(2, 4, 5)
    labels = torch.tensor([[-100, 1, 2, -100], [-100, -100, 3, 4]])
    got = sequence_logprobs(logits, labels)
    lp = torch.log_softmax(logits, -1)
    assert got[0].item() == pytest.approx((lp[0, 0, 1] + lp[0, 1, 2]).item(), rel=1e-5)
    assert got[1].item() == pytest.approx((lp[1, 1, 3] + lp[1, 2, 4]).item(), rel=1e-5)


def test_text_scores_use_squad_normalization_and_rouge_l():
    out = text_scores(["The Eiffel Tower!", "in Paris", "nothing"], [["Eiffel Tower"], "Paris, France", ["yes"]])
    rows = out["per_example"]
    assert [r["exact_match"] for r in rows] == [1.0, 0.0, 0.0]  # articles and punctuation are ignored
    assert rows[1]["f1"] == pytest.approx(2 * 0.5 * 0.5 / 1.0)  # "in paris" vs "paris france": 1 common token
    assert out["exact_match"] == pytest.approx(100 / 3) and out["f1"] == pytest.approx(100 * (1 + 0.5) / 3)
    assert rows[2]["rougeL"] == 0.0 and rows[0]["rougeL"] > 0.7
    assert rouge_l("the cat sat on the mat", ["the cat was on the mat"]) == pytest.approx(5 / 6)
    with pytest.raises(ValueError):
        text_scores(["a"], [])


def test_preference_accuracy_with_and_without_a_reference_model():
    assert preference_accuracy([-1.0, -5.0, -2.0], [-3.0, -4.0, -2.0]) == pytest.approx(1 / 3)  # ties are wrong
    # relative to the reference, the second pair now ranks right and the first wrong
    assert preference_accuracy([-1.0, -5.0], [-3.0, -4.0], ref_chosen=[0.0, -7.0], ref_rejected=[-4.0, -4.0]) == 0.5
    assert math.isnan(preference_accuracy([], []))
