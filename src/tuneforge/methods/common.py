"""Helpers shared by the method implementations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["auto_model_class", "head_module_names", "load_plain", "no_own_loop", "save_plain"]


def auto_model_class(task: str) -> Any:
    import transformers

    return {"classification": transformers.AutoModelForSequenceClassification,
            "ner": transformers.AutoModelForTokenClassification,
            "qa": transformers.AutoModelForQuestionAnswering}[task]


def head_module_names(model: Any) -> list[str]:
    """Top-level modules that are the task head (everything beside the encoder), plus the encoder's pooler,
    which sentence-embedding checkpoints never trained: they are trained and saved with every method."""
    prefix = getattr(model, "base_model_prefix", "")
    names = [n for n, _ in model.named_children() if n != prefix and n != "dropout"]
    base = getattr(model, prefix, None)
    if base is not None and getattr(base, "pooler", None) is not None:
        names.append(f"{prefix}.pooler")
    return names


def save_plain(model: Any, folder: Path) -> dict[str, Any]:
    model.save_pretrained(str(folder), safe_serialization=True)
    files = ["model.safetensors", "config.json"]
    return {"files": files, "saved_bytes": sum((folder / f).stat().st_size for f in files if (folder / f).exists())}


def load_plain(task: str, run_dir: Path) -> Any:
    from tuneforge.utils.hf import quiet_transformers

    quiet_transformers()
    model = auto_model_class(task).from_pretrained(str(run_dir), use_safetensors=True, trust_remote_code=False)
    model.eval()
    return model


def no_own_loop(name: str) -> Any:
    raise NotImplementedError(f"method {name} trains with the recipe's Trainer loop")


def freeze_all_but(model: Any, trainable: list[str]) -> None:
    """Freeze every parameter whose name does not start with one of ``trainable`` (module paths)."""
    for n, p in model.named_parameters():
        p.requires_grad_(any(n == t or n.startswith(t + ".") for t in trainable))


def set_seed_everywhere(seed: int) -> None:
    torch.manual_seed(seed)
