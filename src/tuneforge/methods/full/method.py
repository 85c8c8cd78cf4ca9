"""Full fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.methods.base import FitContext, FitResult, MethodDefaults
from tuneforge.methods.common import load_plain, no_own_loop, save_plain

__all__ = ["FullFineTuning"]


class FullFineTuning(MethodDefaults):
    name = "full"
    summary = "Train every weight (the encoder and the task head): the most accurate, the largest to save."
    own_loop = False
    mergeable = True
    reload_best = True
    lr_scale = 1.0
    trains_encoder = True

    def supports(self, task: Any) -> bool:
        return True  # every task, generative ones (causal LMs) included

    def prepare(self, model: Any, config: Any, task: Any, *, total_steps: int = 100) -> Any:
        return model

    def fit(self, ctx: FitContext) -> FitResult:
        return no_own_loop(self.name)  # type: ignore[no-any-return]

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        return save_plain(model, folder)

    def load(self, run_dir: Path, manifest: dict[str, Any], base_path: Path | None, task: Any) -> Any:
        return load_plain(task, run_dir)

