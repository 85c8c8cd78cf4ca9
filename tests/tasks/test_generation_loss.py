"""The sparse SFT loss (logits only where a token is learned) equals the model's own loss, padded or packed,
and gives the same gradients."""

from __future__ import annotations

import pytest
import torch

from tests.tasks.test_generation_collate import CONVERSATIONS, tiny_llama
from tests.tasks.test_generation_template import tiny_tokenizer
from tuneforge.tasks.generation.collate import PackingCollator, PaddingCollator, pad_token_id
from tuneforge.tasks.generation.loss import sparse_causal_lm_loss
from tuneforge.tasks.generation.template import IGNORE_INDEX, render_dataset


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def features(tok):
    return render_dataset(tok, [{"messages": c} for c in CONVERSATIONS]).features


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("packed", [False, True])
def test_sparse_loss_and_gradients_equal_the_models_own(tok, features, packed):
    model = tiny_llama(tok).train()
    batch = (PackingCollator() if packed else PaddingCollator(pad_token_id(tok)))(features)
    n_items = int((batch["labels"] != IGNORE_INDEX).sum())

    own = model(**batch, num_items_in_batch=torch.tensor(n_items)).loss
    own.backward()
    want = _grads(model)
    model.zero_grad()

    sparse = sparse_causal_lm_loss(model, batch, torch.tensor(n_items))
    sparse.backward()
    got = _grads(model)

    assert own.item() > 0
    assert sparse.item() == pytest.approx(own.item(), rel=1e-5)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


def test_sparse_loss_without_a_count_is_the_mean_and_an_unlearned_batch_gives_zero(tok, features):
    model = tiny_llama(tok).train()
    batch = PaddingCollator(pad_token_id(tok))(features)
    assert sparse_causal_lm_loss(model, batch).item() == pytest.approx(model(**batch).loss.item(), rel=1e-5)

    blank = dict(batch, labels=torch.full_like(batch["labels"], IGNORE_INDEX))
    zero = sparse_causal_lm_loss(model, blank)
    zero.backward()
    assert zero.item() == 0.0
