"""Padding and padding-free (packed) batches on a tiny Llama: packing gives the same loss, no cross-talk."""

from __future__ import annotations

import pytest
import torch

from tests.tasks.test_generation_template import conv, tiny_tokenizer
from tuneforge.tasks.generation.collate import PackingCollator, PaddingCollator, left_pad, pad_token_id
from tuneforge.tasks.generation.metrics import TokenStats, token_stats
from tuneforge.tasks.generation.template import IGNORE_INDEX, render_dataset, render_prompt

CONVERSATIONS = [
    conv(("user", "Where is the Eiffel Tower?"), ("assistant", "It is in Paris.")),
    conv(("system", "Be brief."), ("user", "Say hello."), ("assistant", "Hello there!"), ("user", "Thanks."),
         ("assistant", "Have a great day.")),
    conv(("user", "Reset your password?"), ("assistant", "From the settings page, then sign in again.")),
    conv(("user", "The answer?"), ("assistant", "42.")),
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def tiny_llama(tok, attn: str = "sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    model = LlamaForCausalLM(cfg)
    model.config._attn_implementation = attn
    return model.eval()


@pytest.fixture(scope="module")
def features(tok):
    return render_dataset(tok, [{"messages": c} for c in CONVERSATIONS]).features


def test_padding_collator_pads_to_the_longest_with_masked_labels(tok, features):
    pad = pad_token_id(tok)
    batch = PaddingCollator(pad)(features)
    width = max(len(f["input_ids"]) for f in features)
    assert batch["input_ids"].shape == (4, width) == batch["labels"].shape == batch["attention_mask"].shape
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == f["input_ids"]
        assert batch["labels"][row, :n].tolist() == f["labels"]
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all() and (batch["input_ids"][row, n:] == pad).all()
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
    assert PaddingCollator(pad, pad_to_multiple_of=16)(features)["input_ids"].shape[1] % 16 == 0


def test_packing_collator_restarts_positions_and_separates_labels(features):
    batch = PackingCollator()(features)
    lengths = [len(f["input_ids"]) for f in features]
    assert batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in batch
    assert batch["position_ids"][0].tolist() == [i for n in lengths for i in range(n)]
    assert batch["use_cache"] is False
    starts = [sum(lengths[:k]) for k in range(len(lengths))]
    assert all(batch["labels"][0, s].item() == IGNORE_INDEX for s in starts)
    trained = [x for f in features for x in f["labels"] if x != IGNORE_INDEX]
    assert [x for x in batch["labels"][0].tolist() if x != IGNORE_INDEX] == trained


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_and_logits_equal_unpacked_ones(tok, features, attn):
    model = tiny_llama(tok, attn)
    with torch.no_grad():
        padded = model(**PaddingCollator(pad_token_id(tok))(features))
        packed_batch = PackingCollator()(features)
        packed = model(**packed_batch)
        # the same row without restarting positions: plain causal attention across sequences (the failure mode)
        leaky = model(input_ids=packed_batch["input_ids"], use_cache=False)
    assert torch.allclose(packed.loss, padded.loss, atol=1e-5)
    offset = 0
    leaks = 0.0
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        assert torch.allclose(packed.logits[0, offset:offset + n], padded.logits[row, :n], atol=1e-4)
        leaks = max(leaks, (leaky.logits[0, offset:offset + n] - padded.logits[row, :n]).abs().max().item())
        offset += n
    assert leaks > 1e-3  # without position restarts the sequences do see each other, so the check above can fail


def test_token_stats_match_the_model_loss_and_combine_over_batches(tok, features):
    model = tiny_llama(tok)
    collate = PaddingCollator(pad_token_id(tok))
    with torch.no_grad():
        whole = model(**collate(features))
        stats = token_stats(whole.logits, collate(features)["labels"])
        parts = TokenStats()
        for part in (features[:1], features[1:]):
            batch = collate(part)
            parts += token_stats(model(**batch).logits, batch["labels"])
        packed_batch = PackingCollator()(features)
        packed = token_stats(model(**packed_batch).logits, packed_batch["labels"])
    n_trained = sum(1 for f in features for x in f["labels"] if x != IGNORE_INDEX)
    assert stats.tokens == parts.tokens == packed.tokens == n_trained
    assert stats.loss == pytest.approx(whole.loss.item(), abs=1e-5)
    assert parts.loss == pytest.approx(stats.loss, abs=1e-5) and packed.loss == pytest.approx(stats.loss, abs=1e-5)
    assert 0.0 <= stats.mean_token_accuracy <= 1.0 and parts.correct == stats.correct


def test_left_padded_prompts_generate_what_single_prompts_generate(tok):
    model = tiny_llama(tok)
    prompts = [render_prompt(tok, c[:1]) for c in CONVERSATIONS[:3]]
    batch = left_pad(prompts, pad_token_id(tok))
    assert all(batch["input_ids"][i, -len(p):].tolist() == p for i, p in enumerate(prompts))
    with torch.no_grad():
        together = model.generate(**batch, max_new_tokens=5, do_sample=False, pad_token_id=pad_token_id(tok))
        for i, p in enumerate(prompts):
            alone = model.generate(input_ids=torch.tensor([p]), max_new_tokens=5, do_sample=False,
                                   pad_token_id=pad_token_id(tok))
            assert together[i, batch["input_ids"].shape[1]:].tolist() == alone[0, len(p):].tolist()
