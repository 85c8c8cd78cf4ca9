"""Ensembles: several trained classifiers whose predicted probabilities are averaged, saved and served as one
model.

An ensemble folder holds a copy of each member run under ``members/`` and a manifest with ``method: ensemble``,
so it is self-contained and loads with :func:`~tuneforge.inference.load_predictor` like any run (this module
registers its run loader for that kind); members may use different base models and tokenizers (each encodes the
text its own way).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError, RunError
from tuneforge.inference.predictor import Predictor, load_predictor, register_run_loader
from tuneforge.runs import FORMAT_VERSION, read_manifest, write_manifest
from tuneforge.tasks import get_task
from tuneforge.utils.fs import atomic_dir, storage_errors

__all__ = ["EnsemblePredictor", "build_ensemble", "load_ensemble"]


@dataclass
class EnsemblePredictor:
    """The interface of :class:`Predictor`; probabilities are the (weighted) mean of the members'."""

    run_dir: Path
    manifest: dict[str, Any]
    members: list[Predictor]
    weights: np.ndarray

    @property
    def task(self) -> Any:
        return self.members[0].task

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def multi_label(self) -> bool:
        return bool(self.manifest.get("multi_label"))

    @property
    def tokenizer(self) -> Any:
        return self.members[0].tokenizer

    @property
    def model(self) -> Any:
        import torch

        return torch.nn.ModuleList([m.model for m in self.members])

    def to_examples(self, inputs: Sequence[str | dict[str, Any]]) -> list[dict[str, Any]]:
        return self.members[0].to_examples(inputs)

    def predict_proba(self, examples: Sequence[dict[str, Any]], *, batch_size: int = 64) -> np.ndarray:
        total = None
        for w, m in zip(self.weights, self.members, strict=True):
            p = m.predict_proba(examples, batch_size=batch_size)
            p = p[:, [m.labels.index(lab) for lab in self.labels]]
            total = w * p if total is None else total + w * p
        assert total is not None
        return total

    def predict_examples(self, examples: Sequence[dict[str, Any]], *, batch_size: int = 64,
                         on_batch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        if not examples:
            return []
        proba = self.predict_proba(examples, batch_size=batch_size)
        if on_batch:
            on_batch(len(examples))
        labels = self.labels
        out: list[dict[str, Any]] = []
        for row in proba:
            if self.multi_label:
                out.append({"labels": [labels[j] for j in np.flatnonzero(row >= 0.5)],
                            "scores": {labels[j]: round(float(row[j]), 6) for j in range(len(labels))}})
            else:
                j = int(row.argmax())
                top = np.argsort(-row)[: min(5, len(labels))]
                out.append({"label": labels[j], "score": round(float(row[j]), 6),
                            "scores": {labels[k]: round(float(row[k]), 6) for k in top}})
        return out

    def predict(self, inputs: Sequence[str | dict[str, Any]], *, batch_size: int = 64) -> list[dict[str, Any]]:
        return self.predict_examples(self.to_examples(inputs), batch_size=batch_size)


def build_ensemble(runs: Sequence[str | Path], output: str | Path, *, weights: Sequence[float] | None = None,
                   overwrite: bool = False) -> dict[str, Any]:
    """Copy ``runs`` (classifiers over the same labels) into one ensemble folder; returns its manifest."""
    paths = [Path(r) for r in runs]
    out = Path(output)
    if len(paths) < 2:
        raise ConfigError("runs: an ensemble needs at least two trained runs")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RunError(f"{out} already exists.", hint="Choose another --output, or pass --overwrite.")
    manifests = [read_manifest(r) for r in paths]
    problems = []
    for r, m in zip(paths, manifests, strict=True):
        if not get_task(m["task"]).sequence_level:
            problems.append(f"runs: {r} is a {m['task']} model; ensembles average class probabilities, so every "
                            "member must be a classifier")
        elif m["task"] != manifests[0]["task"]:
            problems.append(f"runs: {r} is a {m['task']} model, {paths[0]} a {manifests[0]['task']} model")
        elif sorted(m["labels"]) != sorted(manifests[0]["labels"]):
            problems.append(f"runs: {r} predicts {m['labels']}, {paths[0]} predicts {manifests[0]['labels']}")
        elif bool(m.get("multi_label")) != bool(manifests[0].get("multi_label")):
            problems.append(f"runs: {r} and {paths[0]} differ in multi-label")
    w = np.ones(len(paths)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != len(paths) or (w <= 0).any():
        problems.append("weights: one positive weight per run")
    if problems:
        raise ConfigError(problems)
    w = w / w.sum()
    members = []
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for i, r in enumerate(paths):
            dest = tmp / "members" / f"{i}-{r.name}"
            with storage_errors(dest):
                shutil.copytree(r, dest, ignore=shutil.ignore_patterns("checkpoints", "logs", "eval-*"))
            members.append(dest.relative_to(tmp).as_posix())
        saved = sum(f.stat().st_size for f in (tmp / "members").rglob("*") if f.is_file())
        manifest = {
            "format_version": FORMAT_VERSION, "name": out.name, "task": manifests[0]["task"],
            "labels": list(manifests[0]["labels"]), "multi_label": bool(manifests[0].get("multi_label")),
            "max_length": max(int(m["max_length"]) for m in manifests), "stride": 128,
            "base_model": {"name": "ensemble", "model_id": ", ".join(m["base_model"]["name"] for m in manifests)},
            "method": "ensemble",
            "method_info": {"members": members, "weights": [float(f"{x:.6f}") for x in w],
                            "member_methods": [m.get("method", "full") for m in manifests], "saved_bytes": saved},
            "training": {"parameters": sum(int(m.get("training", {}).get("parameters") or 0) for m in manifests),
                         "trainable_parameters": 0, "saved_bytes": saved},
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_manifest(tmp, manifest)
        # read_manifest wants weights beside the manifest: the members hold them
        (tmp / "ensemble.safetensors").write_bytes(_empty_safetensors())
    return manifest


def _empty_safetensors() -> bytes:
    from safetensors.torch import save

    return save({})


def load_ensemble(run_dir: Path, manifest: dict[str, Any], *, bf16: bool = False) -> EnsemblePredictor:
    info = manifest["method_info"]
    members = [load_predictor(run_dir / rel, bf16=bf16) for rel in info["members"]]
    return EnsemblePredictor(run_dir, manifest, members, np.asarray(info["weights"], dtype=np.float64))


register_run_loader("ensemble", load_ensemble)
