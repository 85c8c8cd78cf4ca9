"""Helpers shared by the method implementations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError

__all__ = ["AUTO_CLASSES", "auto_model_class", "head_module_names", "load_plain", "no_own_loop", "save_plain"]

#: a task's ``auto_model_kind`` -> the transformers Auto class of its models
AUTO_CLASSES = {"sequence-classification": "AutoModelForSequenceClassification",
                "token-classification": "AutoModelForTokenClassification",
                "question-answering": "AutoModelForQuestionAnswering", "causal-lm": "AutoModelForCausalLM"}


def auto_model_class(task: Any) -> Any:
    """The transformers Auto class for models of ``task`` (by its ``auto_model_kind``)."""
    import transformers

    kind = getattr(task, "auto_model_kind", "")
    if kind not in AUTO_CLASSES:
        raise ConfigError(f"task: {task.name} has no transformers head this method can load "
                          f"(auto_model_kind {kind!r}; known: {', '.join(AUTO_CLASSES)})")
    return getattr(transformers, AUTO_CLASSES[kind])


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


def load_plain(task: Any, run_dir: Path) -> Any:
    from tuneforge.utils.hf import quiet_transformers

    quiet_transformers()
    model = auto_model_class(task).from_pretrained(str(run_dir), use_safetensors=True, trust_remote_code=False)
    model.eval()
    return model


def no_own_loop(name: str) -> Any:
    raise NotImplementedError(f"method {name} trains with the recipe's Trainer loop")
