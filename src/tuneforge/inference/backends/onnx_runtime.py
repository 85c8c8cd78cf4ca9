"""ONNX Runtime models of an export folder (see :mod:`.onnx_export` for how one is written): sessions with pinned
threads, the forward pass over task features, and the predictor and embedder that serve them.

What is trained is what is served: the task encodes the inputs and decodes the outputs exactly as for the torch
model (``task.encode`` -> ONNX Runtime -> ``task.decode``), so predictions differ only by the arithmetic of the
runtime. This module imports neither torch nor the training code (a process that predicts through it starts in a
fraction of the time).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError, RunError
from tuneforge.inference.embeddings import TextEmbedder
from tuneforge.inference.predictor import Predictor, bound_task

__all__ = ["CACHE_FOLDER", "EXPORT_MANIFEST", "FP32_FILE", "INT8_FILE", "OnnxEmbedder", "OnnxPredictor",
           "OnnxRunner", "inference_threads", "is_export_folder", "load_export", "read_export_manifest",
           "same_weights", "weights_fingerprint"]

#: the manifest of an export folder
EXPORT_MANIFEST = "onnx.json"
#: the export a run folder is served from when no export folder is given
CACHE_FOLDER = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def inference_threads() -> int:
    """Threads one ONNX Runtime session uses: ``TUNEFORGE_INFERENCE_THREADS`` or ``OMP_NUM_THREADS`` where set,
    else the CPUs this process may run on (what torch uses too), so a session never oversubscribes the cores."""
    for name in ("TUNEFORGE_INFERENCE_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def make_session(path: Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session of ``path`` with pinned threads (intra-op ``threads``, one inter-op), all graph
    optimizations on; its threads sleep between runs when ``OMP_WAIT_POLICY=PASSIVE`` (the server's setting)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or inference_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if os.environ.get("TUNEFORGE_ORT_SPIN", "") != "1":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """One ONNX model's forward pass over task features: batches of similar length (sorted, as the torch path
    does), padded on the right, outputs cut back to each feature's length, in input order."""

    def __init__(self, path: Path, *, pad_id: int, pad_type_id: int = 0, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads or inference_threads()
        self.session = make_session(self.path, threads=self.threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.pads = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": pad_type_id}
        self.nbytes = self.path.stat().st_size

    def run_batch(self, features: Sequence[dict[str, Any]]) -> list[np.ndarray]:
        """The graph's outputs for one batch of features (padded to its longest)."""
        width = max(len(f["input_ids"]) for f in features)
        feed: dict[str, np.ndarray] = {}
        for name in self.inputs:
            arr = np.full((len(features), width), self.pads.get(name, 0), dtype=np.int64)
            for j, f in enumerate(features):
                row = f.get(name)
                if row is None:  # the tokenizer gives no token types: all zero, as transformers assumes
                    row = [1] * len(f["input_ids"]) if name == "attention_mask" else [0] * len(f["input_ids"])
                arr[j, : len(row)] = row
            feed[name] = arr
        return [np.asarray(a, dtype=np.float32) for a in self.session.run(None, feed)]

    def forward(self, features: Sequence[dict[str, Any]], *, batch_size: int = 64,
                on_batch: Callable[[int], None] | None = None) -> list[tuple[np.ndarray, ...]]:
        """Outputs per feature, without padding, in input order: what
        :func:`tuneforge.tasks.encoder.forward_features` returns for a torch model."""
        order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
        results: list[tuple[np.ndarray, ...] | None] = [None] * len(features)
        for b in range(0, len(order), batch_size):
            idx = order[b: b + batch_size]
            arrays = self.run_batch([features[i] for i in idx])
            per_token = arrays[0].ndim == 3 or len(arrays) > 1
            for j, i in enumerate(idx):
                n = len(features[i]["input_ids"])
                results[i] = tuple(a[j][:n] if per_token else a[j] for a in arrays)
            if on_batch:
                on_batch(len(idx))
        return [r for r in results if r is not None]


def load_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer by the class its ``tokenizer_config.json`` names (no AutoTokenizer: that imports
    torch, seconds of a process start); AutoTokenizer where the class is not named or not found."""
    import transformers

    name = None
    config = Path(folder) / "tokenizer_config.json"
    if config.is_file():
        name = json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class")
    cls = getattr(transformers, name, None) if isinstance(name, str) else None
    if cls is None:
        cls = transformers.AutoTokenizer
    return cls.from_pretrained(str(folder))


def read_export_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / EXPORT_MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{folder} is not an ONNX export (no {EXPORT_MANIFEST}).",
                       hint="Export a run with `tuneforge export RUN --format onnx`.") from None
    except (OSError, ValueError) as e:
        raise RunError(f"{path} cannot be read: {e}.", hint="Export the run again.") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("run_manifest"), dict):
        raise RunError(f"{path} is damaged (no run manifest).", hint="Export the run again.")
    return manifest


def is_export_folder(path: Path) -> bool:
    return (Path(path) / EXPORT_MANIFEST).is_file()


def weights_fingerprint(run_dir: Path, *, digest: bool = True) -> dict[str, dict[str, Any]]:
    """Each weights file of a run folder: size, modification time and (with ``digest``) sha256, so that an export
    is known to be of these weights (a copy that kept the times is recognised without reading the weights)."""
    files: dict[str, dict[str, Any]] = {}
    for f in sorted(Path(run_dir).glob("*.safetensors")):
        st = f.stat()
        entry: dict[str, Any] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if digest:
            h = hashlib.sha256()
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            entry["sha256"] = h.hexdigest()
        files[f.name] = entry
    return files


def same_weights(run_dir: Path, recorded: Any) -> bool:
    if not isinstance(recorded, dict):
        return False
    now = weights_fingerprint(run_dir, digest=False)
    if not now or set(now) != set(recorded):
        return False
    for name, entry in now.items():
        old = recorded[name]
        if not isinstance(old, dict) or old.get("size") != entry["size"]:
            return False
        if old.get("mtime_ns") != entry["mtime_ns"]:
            sha = weights_fingerprint(run_dir)[name]["sha256"]
            if old.get("sha256") != sha:
                return False
    return True


@dataclass
class OnnxPredictor(Predictor):
    """A run's predictor whose forward pass is an ONNX Runtime session (``model``: an :class:`OnnxRunner`): the
    task's encoding and decoding, the run's labels, calibration and reject option, as the torch predictor has."""

    export_dir: Path = field(default=Path("."))
    backend_info: dict[str, Any] = field(default_factory=dict)

    def forward(self, features: Sequence[dict[str, Any]], *, batch_size: int = 64,
                on_batch: Callable[[int], None] | None = None) -> list[tuple[np.ndarray, ...]]:
        return list(self.model.forward(features, batch_size=batch_size, on_batch=on_batch))

    def predict_examples(self, examples: Sequence[dict[str, Any]], *, batch_size: int = 64,
                         on_batch: Callable[[int], None] | None = None, **options: Any) -> list[dict[str, Any]]:
        if options:
            raise ConfigError(f"{', '.join(options)}: not options of a {self.task.name} model")
        if not examples:
            return []
        task, max_length = self.task, int(self.manifest["max_length"])
        enc = task.encode(examples, self.tokenizer, self.labels, max_length=max_length,
                          stride=int(self.manifest.get("stride", 128)), with_labels=False, multi_label=self.multi_label)
        outputs = self.forward(enc.features, batch_size=batch_size, on_batch=on_batch)
        return task.decode(outputs, enc, examples, self.labels, multi_label=self.multi_label)


class OnnxEmbedder(TextEmbedder):
    """Sentence embeddings from an exported encoder (mean pooling and L2 normalisation are in the graph), with
    the inputs checked, cut and counted by :class:`~tuneforge.inference.embeddings.TextEmbedder`."""

    def __init__(self, runner: OnnxRunner, tokenizer: Any, *, max_length: int, batch_size: int = 64) -> None:
        self.model, self.tokenizer, self.max_length, self.batch_size = runner, tokenizer, max_length, batch_size
        self.nbytes = runner.nbytes
        self.backend_info: dict[str, Any] = {}

    def embed(self, texts: list[str]) -> np.ndarray:
        from tuneforge.inference.embeddings import clip_texts

        enc = self.tokenizer(clip_texts(texts, self.tokenizer, self.max_length), truncation=True,
                             max_length=self.max_length)
        keys = [k for k in _INPUTS if k in enc]
        features = [{k: enc[k][i] for k in keys} for i in range(len(texts))]
        out = self.model.forward(features, batch_size=self.batch_size)
        return np.stack([o[0] for o in out]).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def load_export(folder: Path, *, int8: bool, threads: int | None = None) -> OnnxPredictor | OnnxEmbedder:
    """The fp32 (or ``int8``) model of an export folder, as a predictor or (an embedding export) an embedder;
    an int8 model that failed its parity check is refused unless the export was forced."""
    folder = Path(folder)
    manifest = read_export_manifest(folder)
    file = INT8_FILE if int8 else FP32_FILE
    if not (folder / file).is_file():
        flag = " --quantize int8" if int8 else ""
        raise ConfigError(f"{folder} holds no {file}.",
                          hint=f"Export it with `tuneforge export RUN --format onnx{flag}`.")
    check = manifest.get("parity", {}).get("int8" if int8 else "fp32", {})
    if check and not check.get("passed", True) and not manifest.get("forced"):
        raise ConfigError(f"{folder}: the {'int8' if int8 else 'fp32'} ONNX model failed its parity check "
                          f"({check.get('summary', 'its metric dropped more than 1 point')}).",
                          hint="Serve it with --backend onnx or torch, or export it again with --force to accept it.")
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(folder)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    runner = OnnxRunner(folder / file, pad_id=int(pad), pad_type_id=int(getattr(tokenizer, "pad_token_type_id", 0)),
                        threads=threads)
    info = {"backend": "onnx-int8" if int8 else "onnx", "file": file, "export": str(folder),
            "intra_op_threads": runner.threads, "load_s": round(time.perf_counter() - t0, 3),
            "parity": check or None}
    run_manifest = dict(manifest["run_manifest"])
    if manifest.get("kind") == "embedding":
        embedder = OnnxEmbedder(runner, tokenizer, max_length=int(run_manifest["max_length"]))
        embedder.backend_info = info
        return embedder
    from tuneforge.tasks import get_task

    task = bound_task(get_task(run_manifest["task"]), run_manifest)
    source = Path(manifest.get("source", {}).get("run") or folder)
    return OnnxPredictor(source, run_manifest, task, runner, tokenizer, export_dir=folder, backend_info=info)
