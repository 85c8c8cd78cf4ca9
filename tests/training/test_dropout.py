"""FastDropout: the same distribution, scaling, gradient and seeding as nn.Dropout, swapped in without touching
weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tuneforge.training.dropout import FastDropout, keep_mask, use_fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_rate_and_independence(p: float) -> None:
    torch.manual_seed(0)
    m = keep_mask((1000, 1000), p).float()
    assert m.dtype == torch.float32 and m.shape == (1000, 1000)
    assert abs(m.mean().item() - (1 - p)) < 0.003
    # no structure across the four 16-bit words of a draw, nor between neighbours
    words = m.view(-1, 4).mean(0)
    assert torch.allclose(words, torch.full((4,), 1 - p), atol=0.005)
    flat = m.view(-1)
    both = (flat[:-1] * flat[1:]).mean().item()
    assert abs(both - (1 - p) ** 2) < 0.003


def test_keep_mask_odd_sizes_and_seeding() -> None:
    torch.manual_seed(3)
    a = keep_mask((3, 5, 7), 0.3)
    torch.manual_seed(3)
    b = keep_mask((3, 5, 7), 0.3)
    assert a.shape == (3, 5, 7) and a.dtype == torch.bool
    assert torch.equal(a, b)
    assert not torch.equal(a, keep_mask((3, 5, 7), 0.3))  # the generator moved on


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_scales_kept_values_and_backward_uses_the_mask(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    drop = FastDropout(0.25).train()
    x = torch.rand(64, 50, dtype=dtype) + 1.0  # no zeros of its own
    x.requires_grad_(True)
    y = drop(x)
    assert y.dtype == dtype
    kept = y != 0
    assert 0.70 < kept.float().mean().item() < 0.80
    torch.testing.assert_close(y[kept], (x[kept] / 0.75).to(dtype))
    y.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, (kept.to(dtype) / 0.75).to(dtype))


def test_other_devices_keep_torchs_dropout() -> None:
    """Off the CPU (a GPU; here the meta device) the module is nn.Dropout: a CPU mask would not even apply."""
    y = FastDropout(0.5).train()(torch.empty(8, 16, device="meta"))
    assert y.device.type == "meta" and y.shape == (8, 16)


def test_eval_mode_and_p_zero_are_the_identity() -> None:
    x = torch.randn(8, 16)
    assert torch.equal(FastDropout(0.5).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)


def test_swap_keeps_weights_outputs_and_mode(tiny_bert) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    with torch.no_grad():
        out_before = model(input_ids=ids).logits
    plain = sum(type(m) is nn.Dropout for m in model.modules())
    assert plain > 0
    assert use_fast_dropout(model) == plain
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert all(not m.training for m in model.modules() if isinstance(m, FastDropout))
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, out_before)
    model.train()
    torch.manual_seed(0)
    a = model(input_ids=ids).logits
    torch.manual_seed(0)
    assert torch.equal(model(input_ids=ids).logits, a)  # seeded like nn.Dropout


@pytest.mark.parametrize("method", ["full", "lora"])
def test_training_runs_with_fast_dropout_in_every_dropout_module(tmp_path, tiny_bert, cls_rows, monkeypatch,
                                                                 method: str) -> None:
    """The recipe swaps the dropouts after the method has wrapped the model, so LoRA's own dropouts are fast too."""
    from rich.console import Console

    import tuneforge.training.dropout as dropout_module
    from tests.conftest import write_jsonl
    from tuneforge.training import make_config, train

    seen: list[nn.Module] = []

    def spy(model: nn.Module) -> int:
        n = use_fast_dropout(model)
        seen.append(model)
        return n

    monkeypatch.setattr(dropout_module, "use_fast_dropout", spy)
    data = write_jsonl(tmp_path / "train.jsonl", cls_rows)
    config = make_config({"task": "classification", "data": str(data), "base_model": str(tiny_bert),
                          "output": str(tmp_path / "run"), "epochs": 1, "batch_size": 4, "method": method,
                          "precision": "fp32"})
    train(config, console=Console(file=open("/dev/null", "w")))  # noqa: SIM115
    assert len(seen) == 1
    kinds = {type(m) for m in seen[0].modules()}
    assert FastDropout in kinds and nn.Dropout not in kinds
    if method == "lora":
        assert any("lora_dropout" in name for name, m in seen[0].named_modules() if isinstance(m, FastDropout))
