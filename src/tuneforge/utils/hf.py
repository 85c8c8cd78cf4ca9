"""Keep transformers quiet: TuneForge shows its own progress bars and messages."""

from __future__ import annotations

__all__ = ["quiet_transformers"]


def quiet_transformers() -> None:
    """Silence expected warnings ("newly initialized head") and the per-file load/save progress bars."""
    import transformers
    from transformers.utils import logging

    transformers.logging.set_verbosity_error()
    logging.disable_progress_bar()
