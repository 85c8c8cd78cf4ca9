"""TuneforgeTrainer's own behaviour beyond Trainer's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from transformers import Trainer

from tuneforge.training.trainer import TuneforgeTrainer


@pytest.mark.parametrize(("best", "last", "loads"), [(3, 3, False), (2, 3, True), (None, 3, True)])
def test_best_model_is_reloaded_only_when_it_is_not_in_memory(monkeypatch: pytest.MonkeyPatch, best: int | None,
                                                              last: int, loads: bool) -> None:
    calls: list[int] = []
    monkeypatch.setattr(Trainer, "_load_best_model", lambda self: calls.append(1))
    trainer = object.__new__(TuneforgeTrainer)
    trainer.state = SimpleNamespace(best_global_step=best, global_step=last)
    trainer._load_best_model()
    assert bool(calls) is loads
