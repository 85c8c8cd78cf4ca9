"""``auto``: the fastest backend for each model, chosen by a short measurement when the model is loaded.

Every candidate this machine has (torch fp32, torch bf16 where the CPU has bf16 instructions, ONNX fp32, ONNX
int8) loads the model and predicts the same sample; a candidate counts only if its predictions agree with torch
fp32's on at least :data:`MIN_AGREEMENT` of the sample (embeddings: every vector within cosine 0.99), and the
fastest of those, in examples per second at the micro-batcher's typical batch, serves. The choice and every
measurement are kept on the loaded model as ``backend_info`` (shown by ``/v1/models/{id}``). A model no other
backend can run (an ensemble, a generation model, a SetFit run) is served by torch, with the reason recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import TuneforgeError
from tuneforge.inference.backends.base import Backend, LoadedModel

__all__ = ["MIN_AGREEMENT", "AutoBackend"]

log = logging.getLogger(__name__)

#: the share of the sample on which a candidate's predictions must equal torch fp32's
MIN_AGREEMENT = 0.97
#: examples per measured batch (what concurrent requests make of a micro-batch) and batches measured
BATCH = 8
ROUNDS = 3
SAMPLE = 64


class AutoBackend:
    """Loads each model with every candidate backend, measures, keeps the fastest that agrees with torch."""

    name = "auto"

    def __init__(self, candidates: list[str] | None = None,
                 make: Callable[[str], Backend] | None = None) -> None:
        from tuneforge.inference.backends import get_backend

        self._make = make or get_backend
        self._candidates = candidates

    def candidates(self) -> list[str]:
        if self._candidates is not None:
            return list(self._candidates)
        from tuneforge.inference.backends.torch import bf16_supported

        return ["torch", *(["torch-bf16"] if bf16_supported() else []), "onnx", "onnx-int8"]

    def load_predictor(self, path: Path) -> LoadedModel:
        return self._choose(path, embed=False)

    def load_embedder(self, path: Path) -> LoadedModel:
        return self._choose(path, embed=True)

    def _choose(self, path: Path, *, embed: bool) -> LoadedModel:
        from tuneforge.inference.backends.onnx_runtime import is_export_folder

        names = self.candidates()
        if is_export_folder(path):  # no torch model in an export folder: fp32 ONNX is the reference
            names = [n for n in names if n.startswith("onnx")]
        reference_name = names[0]
        reference = self._load(reference_name, path, embed)
        task = getattr(getattr(reference, "predictor", None), "task", None)
        if getattr(task, "generative", False):  # decoding, not a forward pass: measured by the chat batcher
            info = dict(getattr(reference, "backend_info", {}) or {})
            info.update({"backend": reference_name, "chosen_by": "auto",
                         "reason": "generation models are served by torch"})
            setattr(reference, "backend_info", info)  # noqa: B010
            return reference
        sample = _sample(reference, embed)
        results: dict[str, dict[str, Any]] = {}
        ref_out = _timed(reference, sample, results, reference_name)
        best_name, best = reference_name, reference
        for name in names[1:]:
            try:
                model = self._load(name, path, embed)
            except TuneforgeError as e:  # this model cannot run there (an ensemble on ONNX ...): not a candidate
                results[name] = {"error": e.message}
                continue
            out = _timed(model, sample, results, name)
            agree = _agreement(ref_out, out, embed)
            results[name]["agreement"] = round(agree, 4)
            ok = agree >= (1.0 if embed else MIN_AGREEMENT)
            results[name]["agrees"] = ok
            if ok and results[name]["examples_per_s"] > results[best_name]["examples_per_s"]:
                best_name, best = name, model
        results[reference_name].update({"agreement": 1.0, "agrees": True})
        info = dict(getattr(best, "backend_info", {}) or {})
        info.update({"backend": best_name, "chosen_by": "auto", "measured_batch": BATCH, "sample": len(sample),
                     "candidates": results})
        setattr(best, "backend_info", info)  # noqa: B010 - every loaded model carries it
        log.info("auto backend for %s: %s (%s)", path, best_name,
                 ", ".join(f"{k} {v.get('examples_per_s', '-')}/s" for k, v in results.items()))
        return best

    def _load(self, name: str, path: Path, embed: bool) -> LoadedModel:
        backend = self._make(name)
        return backend.load_embedder(path) if embed else backend.load_predictor(path)


def _sample(model: LoadedModel, embed: bool) -> list[Any]:
    """Inputs to measure on: the run's own data where its manifest names a file still there, else generated."""
    predictor = getattr(model, "predictor", None)
    tokenizer = getattr(predictor, "tokenizer", None) or getattr(model, "tokenizer", None)
    from tuneforge.inference.backends.onnx_export import recorded_data, synthetic_texts

    if predictor is not None and hasattr(predictor, "manifest") and not embed:
        path = recorded_data(predictor.manifest)
        if path is not None:
            from tuneforge.tasks import load_dataset

            try:
                ds = load_dataset(path, predictor.task.name, require_labels=False)
                return list(ds.examples[:SAMPLE])
            except TuneforgeError:
                pass
        texts = synthetic_texts(tokenizer, SAMPLE)
        if "question" in predictor.task.columns:
            return model.prepare([{"question": " ".join(t.split()[:5]), "context": t} for t in texts])
        return model.prepare(texts)
    return model.prepare(synthetic_texts(tokenizer, SAMPLE)) if tokenizer is not None else []


def _timed(model: LoadedModel, sample: list[Any], results: dict[str, dict[str, Any]], name: str) -> list[Any]:
    """The model's outputs on the sample, and its speed: the best of ``ROUNDS`` runs over batches of ``BATCH``."""
    model.run(sample[:BATCH])  # warm-up (first-run allocations, lazy initialisation)
    best, out = float("inf"), []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        got: list[Any] = []
        for b in range(0, len(sample), BATCH):
            got.extend(model.run(sample[b: b + BATCH]))
        best, out = min(best, time.perf_counter() - t0), got
    results[name] = {"examples_per_s": round(len(sample) / max(best, 1e-9), 1),
                     **{k: v for k, v in (getattr(model, "backend_info", None) or {}).items()
                        if k in ("intra_op_threads", "file")}}
    return out


def _agreement(ref: list[Any], out: list[Any], embed: bool) -> float:
    if not ref:
        return 1.0
    if embed:
        cos = [float(np.dot(a, b)) for a, b in zip(ref, out, strict=True)]
        return 1.0 if min(cos) >= 0.99 else float(np.mean([c >= 0.99 for c in cos]))
    from tuneforge.inference.backends.onnx_export import same_prediction

    return float(np.mean([same_prediction(a, b) for a, b in zip(ref, out, strict=True)]))
