"""ONNX Runtime backends: ``onnx`` (fp32) and ``onnx-int8`` (weights quantized to int8 by ONNX Runtime's dynamic
quantization), for every encoder task and for sentence embeddings.

A model is served from an *export folder* (written by ``tuneforge export RUN --format onnx``,
:mod:`.onnx_export`): ``model.onnx`` (and ``model_int8.onnx``), the tokenizer, and ``onnx.json``, the manifest that
names the source run, copies its manifest (task, labels, max_length, a fitted calibration) and records the parity
check the export passed. Given a run folder instead, the backend serves the export in ``RUN/onnx/`` when it was
made from these very weights, and otherwise exports there first (once; the folder goes with the run when it is
copied or deleted). The models themselves: :mod:`.onnx_runtime`.
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.errors import ConfigError, RunError
from tuneforge.inference.backends.base import LoadedModel, ServedPredictor
from tuneforge.inference.backends.onnx_runtime import (
    CACHE_FOLDER,
    INT8_FILE,
    OnnxEmbedder,
    OnnxPredictor,
    is_export_folder,
    load_export,
    read_export_manifest,
    same_weights,
)

__all__ = ["OnnxBackend", "OnnxServed", "export_folder_for", "load_onnx"]


def export_folder_for(path: Path, *, int8: bool) -> Path:
    """The export folder that serves ``path``: ``path`` itself when it is one; for a run folder its ``RUN/onnx/``
    export when it was made from the run's present weights, exported there now otherwise (the parity check runs
    with it; a failed int8 check is recorded and refused at load)."""
    path = Path(path)
    if is_export_folder(path):
        return path
    cache = path / CACHE_FOLDER
    if is_export_folder(cache):
        manifest = read_export_manifest(cache)
        fresh = same_weights(path, manifest.get("source", {}).get("weights"))
        if fresh and (not int8 or (cache / INT8_FILE).is_file()):
            return cache
    from tuneforge.inference.backends.onnx_export import export_onnx

    try:
        export_onnx(path, cache, quantize="int8", overwrite=True, keep_failed=True)
    except PermissionError:
        raise RunError(f"{path} cannot be written, so its ONNX model cannot be exported beside it.",
                       hint=f"Export it elsewhere (tuneforge export {path} --format onnx -o DIR) and serve DIR."
                       ) from None
    return cache


def load_onnx(path: Path, *, int8: bool, threads: int | None = None) -> OnnxPredictor | OnnxEmbedder:
    """The model of an export folder, or of a run folder (through its export, made now if needed)."""
    return load_export(export_folder_for(Path(path), int8=int8), int8=int8, threads=threads)


class OnnxServed(ServedPredictor):
    """An :class:`OnnxPredictor` served as a :class:`LoadedModel` (public predictions, tokens as the task counts)."""

    def __init__(self, predictor: OnnxPredictor) -> None:
        self.predictor = predictor
        self.task = predictor.task.name
        self.nbytes = predictor.model.nbytes
        self.backend_info = predictor.backend_info


class OnnxBackend:
    """ONNX Runtime on the CPU: fp32, or with ``int8`` the dynamically quantized model."""

    def __init__(self, *, int8: bool = False) -> None:
        self.int8 = int8
        self.name = "onnx-int8" if int8 else "onnx"

    def load_predictor(self, path: Path) -> LoadedModel:
        model = load_onnx(path, int8=self.int8)
        if isinstance(model, OnnxEmbedder):
            raise ConfigError(f"{path} is an exported encoder for embeddings, not a predictor",
                              hint="use it for /v1/embeddings, or export the run itself")
        return OnnxServed(model)

    def load_embedder(self, path: Path) -> LoadedModel:
        path = Path(path)
        if not is_export_folder(path):
            from tuneforge import runs

            if not runs.has_manifest(path):  # a base encoder folder: exported beside it is not ours to do
                raise ConfigError(f"{path}: a base encoder is served with ONNX from its export",
                                  hint=f"tuneforge export {path} --format onnx -o DIR, then serve DIR")
            path = _embedding_export(path, int8=self.int8)
        model = load_onnx(path, int8=self.int8)
        if not isinstance(model, OnnxEmbedder):
            raise ConfigError(f"{path} is an exported predictor; embeddings need an embedding export",
                              hint="tuneforge export RUN --format onnx --embeddings")
        return model


def _embedding_export(run_dir: Path, *, int8: bool) -> Path:
    """``RUN/onnx-embeddings/``: the run's encoder exported for embeddings, made now when absent or stale."""
    cache = run_dir / f"{CACHE_FOLDER}-embeddings"
    if is_export_folder(cache):
        manifest = read_export_manifest(cache)
        if same_weights(run_dir, manifest.get("source", {}).get("weights")) and (
                not int8 or (cache / INT8_FILE).is_file()):
            return cache
    from tuneforge.inference.backends.onnx_export import export_onnx

    export_onnx(run_dir, cache, quantize="int8", embeddings=True, overwrite=True, keep_failed=True)
    return cache
