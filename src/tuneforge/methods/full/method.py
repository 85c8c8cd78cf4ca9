"""Full fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.methods.base import FitContext, FitResult
from tuneforge.methods.common import load_plain, no_own_loop, save_plain

__all__ = ["FullFineTuning"]


class FullFineTuning:
    name = "full"
    summary = "Train every weight (the encoder and the task head): the most accurate, the largest to save."
    tasks = frozenset({"classification", "ner", "qa"})
    own_loop = False
    mergeable = True
    reload_best = True
    lr_scale = 1.0

    def check(self, config: Any) -> list[str]:
        return []

    def base_model(self, config: Any, requested: Any, settings: Any) -> tuple[Any, str | None]:
        return requested, None

    def prepare(self, model: Any, config: Any, task: Any, *, total_steps: int = 100) -> Any:
        return model

    def trainer_callbacks(self, model: Any) -> list[Any]:
        return []

    def fit(self, ctx: FitContext) -> FitResult:
        return no_own_loop(self.name)  # type: ignore[no-any-return]

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        return save_plain(model, folder)

    def load(self, run_dir: Path, manifest: dict[str, Any], base_path: Path | None) -> Any:
        return load_plain(manifest["task"], run_dir)

    def merge(self, model: Any) -> Any:
        return model
