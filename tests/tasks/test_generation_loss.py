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


@pytest.mark.parametrize("method", ["lora", "full"])
def test_gradient_checkpointing_trains_the_same_model(tmp_path, tiny_chat_model, method):
    """--gradient-checkpointing recomputes activations in the backward pass: the same losses, step by step."""
    import json

    from tests.tasks.test_generation_task import chat_rows, write_jsonl
    from tuneforge.cli import main

    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(12))
    losses = []
    for checkpointing in (False, True):
        run = tmp_path / f"run-{checkpointing}"
        argv = ["train", "--task", "generation", "--data", str(data), "--base-model", str(tiny_chat_model),
                "--method", method, "--epochs", "2", "--batch-size", "4", "--precision", "fp32", "--output",
                str(run), "--logging-steps", "1"] + (["--gradient-checkpointing"] if checkpointing else [])
        assert main(argv) == 0
        manifest = json.loads((run / "tuneforge.json").read_text(encoding="utf-8"))
        assert manifest["config"]["gradient_checkpointing"] is checkpointing
        state = json.loads(next(run.rglob("trainer_state.json")).read_text()) if list(run.rglob(
            "trainer_state.json")) else None
        losses.append(manifest["training"]["final_loss"] if state is None else
                      [e["loss"] for e in state["log_history"] if "loss" in e])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_the_sparse_loss_reports_the_token_accuracy_of_its_logits(tok, features):
    """``metrics`` gets TRL's mean_token_accuracy: one 0/1 per learned token, from the full model's argmax."""
    from tuneforge.tasks.generation.metrics import token_stats

    model = tiny_llama(tok).eval()
    batch = PaddingCollator(pad_token_id(tok))(features)
    metrics: dict = {}
    with torch.no_grad():
        sparse_causal_lm_loss(model, batch, metrics=metrics)
        expected = token_stats(model(**{k: v for k, v in batch.items() if k != "labels"}).logits, batch["labels"])
    per_token = metrics["mean_token_accuracy"]
    assert per_token.shape == (expected.tokens,)
    assert per_token.mean().item() == pytest.approx(expected.mean_token_accuracy)
