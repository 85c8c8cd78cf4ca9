"""What a finished run's manifest says about how it was made: config, resolved knobs, base model, data
fingerprints, dev metrics, library versions and the training summary. (Its file name, format version and how it
is written belong to :mod:`tuneforge.runs`.)"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneforge import runs
from tuneforge.data import Dataset
from tuneforge.training.setup import Prepared

__all__ = ["build_manifest", "now", "training_summary"]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    import tuneforge

    return {"tuneforge": tuneforge.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "python": platform.python_version()}


def _fingerprint(ds: Dataset) -> dict[str, Any]:
    return {"path": str(ds.path), "format": ds.format, "examples": len(ds), "sha256": ds.fingerprint}


def build_manifest(p: Prepared, out: Path, bf16: bool, metrics: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest of the run ``p`` written to ``out`` (without its ``training`` summary)."""
    c = p.config
    data: dict[str, Any] = {"train": _fingerprint(p.train_ds)}
    if p.eval_ds is not None:
        data["eval"] = _fingerprint(p.eval_ds)
    if p.notes.get("augmented_rows"):
        data["train"]["augmented_rows"] = p.notes["augmented_rows"]
    if p.notes.get("pii_masked"):  # mask_pii: what was masked in each file, per type
        for part, counts in p.notes["pii_masked"].items():
            data[part]["pii_masked"] = counts
    if p.unlabeled:
        data["unlabeled"] = {"path": str(c.unlabeled_data), "texts": len(p.unlabeled)}
    base: dict[str, Any] = {"name": p.base.name, "model_id": p.base.spec.model_id if p.base.spec else str(p.base.path),
                            "path": str(p.base.path)}
    if "base_model_note" in p.notes:
        base.update(requested=p.notes["requested_base_model"], note=p.notes["base_model_note"])
    return {
        "format_version": runs.FORMAT_VERSION,
        "name": out.name,
        "task": c.task,
        "labels": p.labels if p.task.labelled else [],
        "multi_label": p.multi_label,
        "max_length": p.hp["max_length"],
        "stride": c.stride,
        "base_model": base,
        "method": c.method,
        "method_info": {},
        "config": c.to_json(),
        "resolved": {**p.hp, "precision": "bf16" if bf16 else "fp32"},
        "data": data,
        "metrics": {"dev": {k: v for k, v in (metrics or {}).items() if not isinstance(v, dict)}} if metrics else {},
        "versions": _versions(),
        "created_at": now(),
    }


def training_summary(*, steps: int, epochs: float | None, train_seconds: float, examples_per_second: float,
                     wall_seconds: float, final_loss: float | None, best_step: int | None, stopped_early: bool,
                     parameters: int, trainable_parameters: int) -> dict[str, Any]:
    """The manifest's ``training`` section."""
    return {
        "steps": steps,
        "epochs": epochs,
        "train_seconds": round(train_seconds, 2),
        "train_examples_per_second": round(examples_per_second, 2),
        "wall_seconds": round(wall_seconds, 2),
        "final_loss": final_loss,
        "best_step": best_step,
        "stopped_early": stopped_early,
        "parameters": parameters,
        "trainable_parameters": trainable_parameters,
        "trainable_share": round(trainable_parameters / max(1, parameters), 6),
    }
