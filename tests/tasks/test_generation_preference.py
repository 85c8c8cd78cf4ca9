"""Preference pairs (DPO) in the generation task on a tiny in-process Llama: pair features come from render_pair
(the one rendering path) and are what the model sees, truncation keeps the prompt's end and one prompt for both
answers, the sequence log-probabilities (with or without the boolean ``logits_to_keep``) equal the full logits',
the DPO loss and its TRL metrics, and predict / score give preference_accuracy (plain log-probabilities for a
model without a reference, the log-ratio to the reference for one with it)."""

from __future__ import annotations

import math
from contextlib import nullcontext

import pytest
import torch

from tests.tasks.test_generation_collate import tiny_llama
from tests.tasks.test_generation_template import tiny_tokenizer
from tuneforge.errors import ConfigError
from tuneforge.models.reference import Reference, frozen_copy_reference, set_reference
from tuneforge.tasks import get_task
from tuneforge.tasks.generation.collate import PaddingCollator
from tuneforge.tasks.generation.metrics import sequence_logprobs
from tuneforge.tasks.generation.preference import (
    PairCollator,
    PreferenceLoss,
    dpo_loss,
    encode_pairs,
    predict_pairs,
    score_pairs,
    sequence_logps,
    truncate_pair,
)
from tuneforge.tasks.generation.template import IGNORE_INDEX, Rendered, render_pair

PAIRS = [
    {"prompt": [{"role": "user", "content": "Where is the Eiffel Tower?"}],
     "chosen": [{"role": "assistant", "content": "It is in Paris."}],
     "rejected": [{"role": "assistant", "content": "The answer is 42."}]},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."},
                {"role": "assistant", "content": "Hello there!"}, {"role": "user", "content": "Again?"}],
     "chosen": [{"role": "assistant", "content": "Hello there!"}],
     "rejected": [{"role": "assistant", "content": "Reset your password from the settings page, then log in."}]},
    {"prompt": [{"role": "user", "content": "How do I reset my password?"}],
     "chosen": [{"role": "assistant", "content": "Reset your password from the settings page."}],
     "rejected": [{"role": "assistant", "content": "Hello there!"}]},
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_llama(tok)


def test_pair_features_are_render_pair_and_the_collator_stacks_chosen_then_rejected(tok):
    pairs = encode_pairs(tok, PAIRS)
    assert pairs.truncated == 0
    for f, ex in zip(pairs.features, PAIRS, strict=True):
        chosen, rejected = render_pair(tok, ex)
        assert (f["input_ids"], f["labels"]) == (chosen.input_ids, chosen.labels)
        assert (f["rejected_input_ids"], f["rejected_labels"]) == (rejected.input_ids, rejected.labels)
        # the shared prompt (the earlier assistant turn included) is not learned; each answer and its end-of-turn is
        # (with the template's newline after it, see template.py)
        learned = [t for t, y in zip(f["input_ids"], f["labels"], strict=True) if y != IGNORE_INDEX]
        assert tok.decode(learned) == ex["chosen"][0]["content"] + "<|im_end|>\n"
    batch = PairCollator(tok.pad_token_id)(pairs.features)
    width = max(len(x) for f in pairs.features for x in (f["input_ids"], f["rejected_input_ids"]))
    assert batch["input_ids"].shape == (6, width) == batch["labels"].shape
    for i, f in enumerate(pairs.features):
        assert batch["input_ids"][i, :len(f["input_ids"])].tolist() == f["input_ids"]
        assert batch["input_ids"][3 + i, :len(f["rejected_input_ids"])].tolist() == f["rejected_input_ids"]
    assert "ref_chosen_logps" not in batch
    with_ref = [{**f, "ref_chosen_logps": -1.0 - i, "ref_rejected_logps": -9.0} for i, f in enumerate(pairs.features)]
    batch = PairCollator(tok.pad_token_id)(with_ref)
    assert batch["ref_chosen_logps"].tolist() == [-1.0, -2.0, -3.0] and batch["ref_rejected_logps"].shape == (3,)


def test_truncation_keeps_the_end_of_one_prompt_for_both_answers(tok):
    ex = PAIRS[1]
    chosen, rejected = render_pair(tok, ex)
    limit = len(rejected.input_ids) - 5
    c, r, cut = truncate_pair(chosen, rejected, limit)
    assert cut and len(c.input_ids) <= limit and len(r.input_ids) <= limit
    # the answers are whole: the prompt lost its oldest tokens, the same ones on both sides
    assert [y for y in c.labels if y != IGNORE_INDEX] == [y for y in chosen.labels if y != IGNORE_INDEX]
    assert [y for y in r.labels if y != IGNORE_INDEX] == [y for y in rejected.labels if y != IGNORE_INDEX]
    prompt_c = c.input_ids[:next(j for j, y in enumerate(c.labels) if y != IGNORE_INDEX)]
    prompt_r = r.input_ids[:next(j for j, y in enumerate(r.labels) if y != IGNORE_INDEX)]
    assert prompt_c == prompt_r and chosen.input_ids[-len(c.input_ids):] == c.input_ids
    # at least half of max_length stays prompt; an answer too long for the rest is cut at the right
    long = Rendered(list(range(10)) + list(range(100, 140)), [IGNORE_INDEX] * 10 + list(range(100, 140)))
    short = Rendered(list(range(10)) + [7, 8], [IGNORE_INDEX] * 10 + [7, 8])
    c, r, cut = truncate_pair(long, short, 16)
    assert cut and c.input_ids == list(range(2, 10)) + list(range(100, 108))
    assert r.input_ids == list(range(2, 10)) + [7, 8]
    assert truncate_pair(short, short, 16) == (short, short, False)
    assert encode_pairs(tok, [ex], max_length=limit).truncated == 1


def test_sequence_logps_equal_the_full_logits_and_carry_gradients(tok, model):
    feats = encode_pairs(tok, PAIRS).features
    batch = PairCollator(tok.pad_token_id)(feats)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = sequence_logprobs(logits, batch["labels"])
    got = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert torch.allclose(got, expected, atol=1e-4)
    got.sum().backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
    model.zero_grad()

    class NoKeep(torch.nn.Module):  # a model whose forward has no logits_to_keep: full logits are sliced
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, use_cache=False):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    with torch.no_grad():
        plain = sequence_logps(NoKeep(model), batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert torch.allclose(plain, expected, atol=1e-4)


def test_dpo_loss_is_the_sigmoid_loss_with_rewards_scaled_by_beta():
    chosen, rejected = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    ref_c, ref_r = torch.tensor([-11.0, -4.0]), torch.tensor([-11.0, -4.0])
    losses, rc, rr = dpo_loss(chosen, rejected, ref_c, ref_r, beta=0.5)
    assert rc.tolist() == [0.5, 0.0] and rr.tolist() == [-0.5, 0.5]
    assert losses.tolist() == pytest.approx([-math.log(1 / (1 + math.exp(-1.0))), -math.log(1 / (1 + math.exp(0.5)))])
    same, _, _ = dpo_loss(chosen, rejected, chosen, rejected, beta=0.1)  # the policy is its reference: log 2
    assert same.tolist() == pytest.approx([math.log(2)] * 2)


def _with_copy_reference(tok, beta=0.1):
    policy = tiny_llama(tok)
    return set_reference(policy, frozen_copy_reference(tiny_llama(tok), beta))


def test_the_preference_loss_sees_render_pair_ids_and_reports_trl_metrics(tok):
    policy = _with_copy_reference(tok)
    seen = []
    hook = policy.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs["input_ids"].clone()),
                                            with_kwargs=True)
    loss_fn = PreferenceLoss(policy, tok)
    feats = loss_fn.with_reference_logps(policy, encode_pairs(tok, PAIRS).features, batch_size=8, bf16=False)
    seen.clear()
    batch = loss_fn.collator(feats)
    policy.train()
    loss, metrics = loss_fn(policy, batch)
    hook.remove()
    [ids] = seen
    rows = [r for ex in PAIRS for r in [render_pair(tok, ex)]]
    for i, (chosen, rejected) in enumerate(rows):
        assert ids[i, :len(chosen.input_ids)].tolist() == chosen.input_ids
        assert ids[len(PAIRS) + i, :len(rejected.input_ids)].tolist() == rejected.input_ids
    # the copy equals the policy at the start: log 2 and zero rewards
    assert float(loss.detach()) == pytest.approx(math.log(2), abs=1e-5)
    assert set(metrics) == {"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                            "logps/chosen", "logps/rejected"}
    assert all(v.shape == (len(PAIRS),) for v in metrics.values())
    assert metrics["rewards/accuracies"].tolist() == [0.0] * 3  # ties are not wins
    with pytest.raises(ValueError, match="reference"):
        PreferenceLoss(tiny_llama(tok), tok)


def test_predict_and_score_pairs_plain_log_probs_without_a_reference(tok, model):
    task = get_task("generation")
    preds = task.predict(model, tok, PAIRS, [], max_length=128, batch_size=2)
    feats = [f for ex in PAIRS for f in [render_pair(tok, ex)]]
    collate = PaddingCollator(tok.pad_token_id)
    for p, (chosen, rejected) in zip(preds, feats, strict=True):
        batch = collate([chosen.feature(), rejected.feature()])
        with torch.no_grad():
            c, r = sequence_logprobs(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                     batch["labels"]).tolist()
        assert p["chosen_logp"] == pytest.approx(c, abs=1e-4) and p["rejected_logp"] == pytest.approx(r, abs=1e-4)
        assert p["chosen_reward"] == p["chosen_logp"] and "ref_chosen_logp" not in p and "loss" not in p
        assert p["preferred"] == (c > r)
    scores = task.score(preds, PAIRS, [])
    assert scores["n"] == 3 and "valid_loss" not in scores
    assert scores["preference_accuracy"] == sum(p["preferred"] for p in preds) / 3
    assert scores["reward_margin"] == pytest.approx(sum(p["chosen_logp"] - p["rejected_logp"] for p in preds) / 3)
    wrong = [task.describe(p, ex) for p, ex in zip(preds, PAIRS, strict=True)]
    assert all(("preferred" in line and "ranked below" in line) for _, line in wrong)
    assert [w for w, _ in wrong] == [not p["preferred"] for p in preds]


def test_with_a_reference_the_reward_is_beta_times_the_log_ratio(tok):
    policy = _with_copy_reference(tok, beta=0.5)
    with torch.no_grad():  # move the policy away from its reference
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    preds = predict_pairs(policy, tok, PAIRS, max_length=128)
    for p in preds:
        assert p["chosen_reward"] == pytest.approx(0.5 * (p["chosen_logp"] - p["ref_chosen_logp"]), abs=1e-5)
        assert p["loss"] == pytest.approx(-math.log(1 / (1 + math.exp(-p["margin"]))), abs=1e-5)
    scores = score_pairs(preds)
    assert scores["valid_loss"] == pytest.approx(sum(p["loss"] for p in preds) / 3)
    # a reference that is the model itself gives zero rewards: nothing preferred
    same = set_reference(policy, Reference(lambda: nullcontext(policy), 0.5))
    assert score_pairs(predict_pairs(same, tok, PAIRS, max_length=128))["preference_accuracy"] == 0.0


def test_encode_and_count_tokens_of_pairs(tok):
    task = get_task("generation")
    enc = task.encode(PAIRS, tok, [], max_length=1024)
    assert enc.features == encode_pairs(tok, PAIRS).features and enc.n_examples == 3
    total = sum(len(f["input_ids"]) + len(f["rejected_input_ids"]) for f in enc.features)
    assert task.count_tokens(PAIRS, tok) == total
    assert task.count_tokens(PAIRS, tok, max_length=16) <= 6 * 16
    with pytest.raises(ConfigError, match="mixed"):
        task.encode([PAIRS[0], {"messages": [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello"}]}], tok, [], max_length=64)
