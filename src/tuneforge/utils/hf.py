"""Small transformers helpers: keep it quiet (TuneForge shows its own progress bars and messages), and the
longest input a model folder takes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["max_positions", "quiet_transformers"]


def quiet_transformers() -> None:
    """Silence expected warnings ("newly initialized head") and the per-file load/save progress bars."""
    import transformers
    from transformers.utils import logging

    transformers.logging.set_verbosity_error()
    logging.disable_progress_bar()


def max_positions(model_dir: str | Path, tokenizer: Any = None) -> int:
    """The most tokens one input to the model in ``model_dir`` may have: its ``max_position_embeddings`` (RoBERTa's
    less the two its positions skip), capped by the tokenizer's ``model_max_length`` when that is set."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    limit = int(cfg.get("max_position_embeddings", 512))
    if cfg.get("model_type") in ("roberta", "xlm-roberta"):
        limit -= 2  # their positions start after the padding index
    tok_max = getattr(tokenizer, "model_max_length", limit) or limit
    return int(min(limit, tok_max if tok_max < 1e6 else limit))
