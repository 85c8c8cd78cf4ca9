"""Export a run (any encoder task) or an encoder (for embeddings) to ONNX, quantize it, and check the export.

The graph is traced by ``torch.onnx.export`` from the model the run serves (an adapter merged into its base
first), fused by ONNX Runtime's transformer optimizer where the architecture allows, and quantized by ONNX
Runtime: ``int8`` is dynamic quantization (int8 weights per channel, activations quantized on the fly), ``int8-
static`` static QDQ quantization calibrated on the check sample. No graph is written by hand.

The export checks itself before it is renamed into place: the exported models (through the very loader that
serves them, tokenizer included) and the torch model run on a sample — ``check_data`` when given, else the first
examples of the run's own data, else generated texts — and the report gives the largest absolute difference of
their raw outputs, the agreement of their predictions, and the task's headline metric on each. An ONNX model whose
metric drops more than :data:`MAX_DROP_POINTS` points below torch's (embeddings: a cosine similarity to torch's
vectors below 0.99) is refused unless ``force``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge import runs
from tuneforge.errors import ConfigError, RunError
from tuneforge.inference.backends.onnx_runtime import (
    EXPORT_MANIFEST,
    FP32_FILE,
    INT8_FILE,
    OnnxEmbedder,
    OnnxPredictor,
    load_export,
    weights_fingerprint,
)
from tuneforge.utils.fs import atomic_dir, atomic_write_json

__all__ = ["MAX_DROP_POINTS", "QUANTIZATIONS", "export_onnx", "recorded_data", "same_prediction", "synthetic_texts"]

QUANTIZATIONS = ("int8", "int8-static")
#: the most an exported model's headline metric may drop below torch's on the check sample, in points
MAX_DROP_POINTS = 1.0
#: embeddings: the lowest cosine similarity to torch's vectors an exported encoder may give
MIN_COSINE = 0.99
SAMPLE_SIZE = 256
OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_OUTPUTS = ("logits", "start_logits", "end_logits")


def export_onnx(source: str | Path, output: str | Path, *, quantize: str | None = None, embeddings: bool = False,
                check_data: str | Path | None = None, force: bool = False, overwrite: bool = False,
                keep_failed: bool = False, sample_size: int = SAMPLE_SIZE) -> dict[str, Any]:
    """Write the ONNX export of ``source`` (a finished run folder; with ``embeddings`` also a base encoder: a
    registered name or a folder) to ``output`` and return its manifest (``onnx.json``), parity report included.
    ``force`` writes and serves a model that failed its check; ``keep_failed`` writes it with the failure recorded
    (the backends then refuse to load that model: what a run's export on first load does).

    Raises:
        ConfigError: a generative run, an ensemble, a method that cannot be merged, an unknown quantization; or an
            exported model that fails the parity check (without ``force``): nothing is written then.
        RunError: ``output`` exists (without ``overwrite``).
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"quantize: unknown quantization '{quantize}' (choose one of: {', '.join(QUANTIZATIONS)})")
    output = Path(output)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise RunError(f"{output} already exists.", hint="Choose another --output, or pass --overwrite to replace it.")
    source = Path(source) if runs.has_manifest(Path(source)) else source
    exporter = _EmbeddingExport(source) if embeddings else _PredictorExport(Path(source))
    sample = exporter.sample(Path(check_data) if check_data else None, sample_size)
    reference = exporter.reference(sample)  # before merging: the model as torch serves it
    with atomic_dir(output, overwrite=True) as tmp:
        module, names, outputs = exporter.module()
        _trace(module, exporter.dummy_inputs(names), names, outputs, tmp / FP32_FILE,
               per_token=exporter.per_token)
        fused = _fuse(tmp / FP32_FILE, exporter.config)
        if quantize == "int8":
            _quantize_dynamic(tmp / FP32_FILE, tmp / INT8_FILE)
        elif quantize == "int8-static":
            _quantize_static(tmp / FP32_FILE, tmp / INT8_FILE, exporter.calibration(sample, names))
        exporter.tokenizer.save_pretrained(str(tmp))
        manifest = exporter.manifest(names, outputs, quantize=quantize, fused=fused, force=force)
        atomic_write_json(tmp / EXPORT_MANIFEST, manifest)
        parity: dict[str, Any] = {"sample": sample.describe()}
        for kind, int8 in (("fp32", False), ("int8", True)):
            if int8 and quantize is None:
                continue
            parity[kind] = exporter.check(load_export(tmp, int8=int8), sample, reference)
        manifest["parity"] = parity
        atomic_write_json(tmp / EXPORT_MANIFEST, manifest)
        failed = [k for k in ("fp32", "int8") if k in parity and not parity[k]["passed"]]
        if failed and not force and not keep_failed:
            details = "; ".join(f"{k}: {parity[k]['summary']}" for k in failed)
            hint = ("Try --quantize int8-static (or no --quantize for fp32 only), check on more data with "
                    "--check-data FILE, or pass --force to write it anyway.") if "int8" in failed and \
                "fp32" not in failed else "Report this model's architecture as an export bug; --force writes it."
            raise ConfigError(f"ONNX export refused: the exported model does not match the torch model on "
                              f"{sample.describe()} ({details}).", hint=hint)
    return manifest


# ------------------------------------------------------------------------------------------------ the sample
class Sample:
    """The examples the parity check runs on, and whether they carry labels (a metric is computed then)."""

    def __init__(self, examples: list[Any], *, origin: str, labelled: bool) -> None:
        self.examples, self.origin, self.labelled = examples, origin, labelled

    def describe(self) -> str:
        return f"{len(self.examples)} examples of {self.origin}" + ("" if self.labelled else " (unlabelled)")


def synthetic_texts(tokenizer: Any, n: int, seed: int = 0) -> list[str]:
    """Texts of random words of the tokenizer's vocabulary (special tokens and word pieces left out)."""
    rng = random.Random(seed)
    vocab = [w for w in tokenizer.get_vocab() if w.isalpha() and not w.startswith(("##", "[", "<", "▁"))][:5000]
    vocab = vocab or ["the", "a", "model", "text"]
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 40))) for _ in range(n)]


def recorded_data(manifest: dict[str, Any]) -> Path | None:
    """The run's own dev (or training) data file, where it is still there."""
    data = manifest.get("data") or {}
    for split in ("dev", "eval", "validation", "train"):
        entry = data.get(split)
        path = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(path, str) and Path(path).is_file():
            return Path(path)
    return None


# ------------------------------------------------------------------------------------------- predictor export
class _PredictorExport:
    """A finished run of an encoder task: its logits (or start/end logits) as the graph's outputs."""

    def __init__(self, run_dir: Path) -> None:
        from tuneforge.inference.predictor import Predictor, load_predictor
        from tuneforge.methods import get_method

        runs.read_manifest(run_dir)
        self.run_dir = run_dir
        predictor = load_predictor(run_dir)
        if not isinstance(predictor, Predictor):
            raise ConfigError("method: an ensemble is several models; export each of its runs",
                              hint="tuneforge export MEMBER_RUN --format onnx")
        if predictor.task.generative:
            raise ConfigError(f"format: ONNX export is for encoder models; a {predictor.task.name} model is served "
                              "with torch", hint="use --format transformers to export it as a plain model")
        self.method = get_method(predictor.manifest.get("method", "full"))
        if self.method.own_loop:
            raise ConfigError(f"method: {self.method.name} models are a sentence encoder with their own head and do "
                              "not export to ONNX", hint="serve the run folder with --backend torch")
        self.predictor, self.tokenizer = predictor, predictor.tokenizer
        self.config = predictor.model.config
        self.per_token = False  # known once the model ran (module())

    @property
    def task(self) -> Any:
        return self.predictor.task

    def sample(self, check_data: Path | None, n: int) -> Sample:
        p, task = self.predictor, self.task
        path = check_data or recorded_data(p.manifest)
        if path is not None:
            from tuneforge.tasks import load_dataset

            allowed = getattr(task, "reference_labels", None)
            label_set = (allowed(p.labels) if allowed else p.labels) if task.closed_label_set else None
            ds = load_dataset(path, task.name, require_labels=True, label_set=label_set,
                              multi_label=p.multi_label)
            examples = list(ds.examples)
            if check_data is None:
                examples = examples[:n]  # the run's own data: a quick look, not the whole file
            return Sample(examples, origin=Path(path).name, labelled=True)
        texts = synthetic_texts(self.tokenizer, min(n, 64))
        asks = "question" in task.columns
        inputs = [{"question": " ".join(t.split()[:5]), "context": t} for t in texts] if asks else texts
        return Sample(p.to_examples(inputs), origin="generated texts", labelled=False)

    def _encode(self, sample: Sample) -> Any:
        p = self.predictor
        return self.task.encode(sample.examples, self.tokenizer, p.labels, max_length=int(p.manifest["max_length"]),
                                stride=int(p.manifest.get("stride", 128)), with_labels=False,
                                multi_label=p.multi_label)

    def reference(self, sample: Sample) -> dict[str, Any]:
        enc = self._encode(sample)
        outputs = self.predictor.forward(enc.features)
        return {"enc": enc, "outputs": outputs, "predictions": self._decode(outputs, enc, sample)}

    def _decode(self, outputs: list[tuple[np.ndarray, ...]], enc: Any, sample: Sample) -> list[dict[str, Any]]:
        p = self.predictor
        return self.task.decode(outputs, enc, sample.examples, p.labels, multi_label=p.multi_label)

    def module(self) -> tuple[Any, list[str], list[str]]:
        import torch

        model = self.method.merge(self.predictor.model) if self.method.mergeable else self.predictor.model
        model.eval()
        probe = self.tokenizer("a b", "c")
        names = [k for k in _INPUTS if k in probe]
        if "token_type_ids" in names and int(getattr(self.config, "type_vocab_size", 2) or 0) < 1:
            names.remove("token_type_ids")
        with torch.inference_mode():
            out = model(**{k: torch.tensor([probe[k]]) for k in names})
        outputs = [k for k in _OUTPUTS if getattr(out, k, None) is not None]
        self.per_token = len(outputs) > 1 or getattr(out, outputs[0]).dim() == 3

        class Logits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *inputs: Any) -> tuple[Any, ...]:
                result = self.model(**dict(zip(names, inputs, strict=True)))
                return tuple(getattr(result, k) for k in outputs)

        return Logits().eval(), names, outputs

    def dummy_inputs(self, names: list[str]) -> tuple[Any, ...]:
        return _dummy(self.tokenizer, names)

    def calibration(self, sample: Sample, names: list[str]) -> list[dict[str, np.ndarray]]:
        return _batches(self._encode(sample).features, names, self.tokenizer)

    def manifest(self, names: list[str], outputs: list[str], **info: Any) -> dict[str, Any]:
        p = self.predictor
        return _manifest("predictor", p.manifest, self.run_dir, names, outputs, task=self.task.name,
                         labels=p.labels, max_length=int(p.manifest["max_length"]), **info)

    def check(self, onnx: Any, sample: Sample, reference: dict[str, Any]) -> dict[str, Any]:
        assert isinstance(onnx, OnnxPredictor)
        enc = reference["enc"]
        outputs = onnx.forward(enc.features)
        preds = self._decode(outputs, enc, sample)
        diff = max((float(np.max(np.abs(a - b))) for o, r in zip(outputs, reference["outputs"], strict=True)
                    for a, b in zip(o, r, strict=True) if a.size), default=0.0)
        public = self.task.public_prediction
        agree = float(np.mean([same_prediction(public(a), public(b)) for a, b in
                               zip(preds, reference["predictions"], strict=True)])) if preds else 1.0
        report: dict[str, Any] = {"max_abs_diff": round(diff, 6), "agreement": round(agree, 4)}
        if sample.labelled:
            p = self.predictor
            metric = self.task.main_metric
            before = self.task.score(reference["predictions"], sample.examples, p.labels,
                                     multi_label=p.multi_label)
            after = self.task.score(preds, sample.examples, p.labels, multi_label=p.multi_label)
            scale = 1.0 if "exact_match" in before else 100.0  # points: QA scores 0-100 already
            delta = (float(after[metric]) - float(before[metric])) * scale
            report.update({"metric": metric, "torch": round(float(before[metric]), 6),
                           "onnx": round(float(after[metric]), 6), "delta_points": round(delta, 3)})
            report["passed"] = delta >= -MAX_DROP_POINTS
            report["summary"] = (f"{metric} {float(after[metric]):.4f} vs torch {float(before[metric]):.4f}, "
                                 f"{delta:+.2f} points; max |logit diff| {diff:.4f}")
        else:  # no labels: the predictions must agree as a 1-point metric drop at most could allow
            report["passed"] = agree >= 1 - MAX_DROP_POINTS / 100
            report["summary"] = f"{agree:.1%} of predictions agree with torch; max |logit diff| {diff:.4f}"
        return report


def same_prediction(a: Any, b: Any) -> bool:
    """Whether two public predictions say the same (labels, entities' spans and types, answers), scores aside."""
    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("score", "scores")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return bool(strip(a) == strip(b))


# ------------------------------------------------------------------------------------------- embedding export
class _EmbeddingExport:
    """Sentence embeddings of a base encoder or of a run's fine-tuned encoder: mean pooling and L2 normalisation
    traced into the graph, whose one output is ``sentence_embedding``."""

    def __init__(self, source: str | Path) -> None:
        from tuneforge.inference.embeddings import Embedder

        self.run_dir: Path | None = None
        if isinstance(source, Path) and runs.has_manifest(source):
            runs.read_manifest(source)
            self.run_dir = source
            self.embedder = Embedder.of_run(source)
            self.run_manifest = {"task": "embedding", "name": source.name, "max_length": self.embedder.max_length}
        else:
            from tuneforge.settings import Settings

            base = runs.resolve_base_model(str(source), Settings().cache_dir)
            self.embedder = Embedder(base.path)
            self.run_manifest = {"task": "embedding", "name": base.name, "max_length": self.embedder.max_length}
            self.base_path = base.path
        self.tokenizer = self.embedder.tokenizer
        self.config = self.embedder.model.config
        self.per_token = False

    def sample(self, check_data: Path | None, n: int) -> Sample:
        if check_data is not None:
            texts = []
            with check_data.open(encoding="utf-8") as f:
                for line in f:
                    row = json.loads(line) if line.strip() else {}
                    if isinstance(row, dict) and isinstance(row.get("text"), str) and row["text"].strip():
                        texts.append(row["text"])
            if not texts:
                raise ConfigError(f"check_data: {check_data} has no rows with a text field",
                                  hint="give a JSONL file of {\"text\": ...} rows")
            return Sample(texts, origin=check_data.name, labelled=False)
        return Sample(synthetic_texts(self.tokenizer, min(n, 64)), origin="generated texts", labelled=False)

    def reference(self, sample: Sample) -> dict[str, Any]:
        return {"vectors": self.embedder.embed(list(sample.examples))}

    def module(self) -> tuple[Any, list[str], list[str]]:
        import torch

        from tuneforge.models.tensors import mean_pool

        embedder = self.embedder
        hidden = embedder._hidden  # the same hidden states the torch embedder pools
        probe = self.tokenizer("a b")
        names = [k for k in _INPUTS if k in probe]

        class Pooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = embedder.model

            def forward(self, *inputs: Any) -> Any:
                batch = dict(zip(names, inputs, strict=True))
                states = hidden(self.model, batch).float()
                return torch.nn.functional.normalize(mean_pool(states, batch["attention_mask"]), p=2, dim=1)

        return Pooled().eval(), names, ["sentence_embedding"]

    def dummy_inputs(self, names: list[str]) -> tuple[Any, ...]:
        return _dummy(self.tokenizer, names)

    def calibration(self, sample: Sample, names: list[str]) -> list[dict[str, np.ndarray]]:
        enc = self.tokenizer(list(sample.examples), truncation=True, max_length=self.embedder.max_length)
        keys = [k for k in names if k in enc]
        return _batches([{k: enc[k][i] for k in keys} for i in range(len(sample.examples))], names, self.tokenizer)

    def manifest(self, names: list[str], outputs: list[str], **info: Any) -> dict[str, Any]:
        return _manifest("embedding", self.run_manifest, self.run_dir, names, outputs, task="embedding",
                         labels=[], max_length=self.embedder.max_length, **info)

    def check(self, onnx: Any, sample: Sample, reference: dict[str, Any]) -> dict[str, Any]:
        assert isinstance(onnx, OnnxEmbedder)
        got, ref = onnx.embed(list(sample.examples)), reference["vectors"]
        cosine = np.sum(got * ref, axis=1)  # both unit length
        low = float(cosine.min()) if len(cosine) else 1.0
        return {"max_abs_diff": round(float(np.max(np.abs(got - ref))) if got.size else 0.0, 6),
                "min_cosine": round(low, 6), "mean_cosine": round(float(cosine.mean()) if len(cosine) else 1.0, 6),
                "passed": low >= MIN_COSINE, "summary": f"lowest cosine similarity to torch {low:.4f}"}


# ---------------------------------------------------------------------------------------- tracing, quantizing
def _dummy(tokenizer: Any, names: list[str]) -> tuple[Any, ...]:
    """Two inputs of different lengths, padded: the trace sees a real attention mask."""
    import torch

    enc = tokenizer(["an example input to trace the model with", "a shorter one"], padding=True, return_tensors="pt")
    return tuple(enc[k] if k in enc else torch.zeros_like(enc["input_ids"]) for k in names)


def _trace(module: Any, args: tuple[Any, ...], names: list[str], outputs: list[str], path: Path, *,
           per_token: bool) -> None:
    """``torch.onnx.export`` (the TorchScript tracer) with batch and sequence axes dynamic; a per-token output
    (NER logits, QA start/end logits) keeps its sequence axis dynamic too."""
    import torch

    axes: dict[str, dict[int, str]] = {k: {0: "batch", 1: "sequence"} for k in names}
    for k in outputs:
        axes[k] = {0: "batch", 1: "sequence"} if per_token else {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, output_names=outputs, dynamic_axes=axes,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)


def _fuse(path: Path, config: Any) -> dict[str, int]:
    """ONNX Runtime's transformer optimizer on the graph (LayerNorm, GELU and attention fusions, which the int8
    kernels then run fused); the graph as traced where it does not apply. Returns the fused operators' counts."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimized = optimize_model(str(path), model_type="bert", num_heads=int(config.num_attention_heads),
                                       hidden_size=int(config.hidden_size), opt_level=1, use_gpu=False)
        stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
        optimized.save_model_to_file(str(path))
        return stats
    except Exception:  # noqa: BLE001 - an architecture the optimizer does not know: keep the traced graph
        return {}


def _quantize_dynamic(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # per channel: one scale per output column keeps small-margin logits (a short fine-tuning) where they were;
    # DefaultTensorType: the fused operators have no type inference in the quantizer
    with _quiet_root_logger():  # the quantizer logs a pre-processing tip on the root logger
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _quantize_static(src: Path, dst: Path, batches: list[dict[str, np.ndarray]]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with _quiet_root_logger():
        # MatMul only: the encoder's weights; the heads' Gemm and the fused normalisations stay fp32
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True})


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _batches(features: Sequence[dict[str, Any]], names: list[str], tokenizer: Any,
             size: int = 8) -> list[dict[str, np.ndarray]]:
    """Calibration batches: features padded as the runner pads them."""
    pads = {"input_ids": int(tokenizer.pad_token_id or 0), "attention_mask": 0, "token_type_ids": 0}
    out = []
    for b in range(0, len(features), size):
        chunk = features[b: b + size]
        width = max(len(f["input_ids"]) for f in chunk)
        feed = {}
        for name in names:
            arr = np.full((len(chunk), width), pads[name], dtype=np.int64)
            for j, f in enumerate(chunk):
                row = f.get(name) or ([1] if name == "attention_mask" else [0]) * len(f["input_ids"])
                arr[j, : len(row)] = row
            feed[name] = arr
        out.append(feed)
    return out


def _manifest(kind: str, run_manifest: dict[str, Any], run_dir: Path | None, names: list[str], outputs: list[str],
              *, task: str, labels: list[str], max_length: int, quantize: str | None, fused: dict[str, int],
              force: bool) -> dict[str, Any]:
    import onnxruntime
    import torch
    import transformers

    return {
        "format": "tuneforge-onnx", "format_version": 1, "kind": kind, "task": task, "labels": labels,
        "max_length": max_length, "inputs": names, "outputs": outputs, "opset": OPSET,
        "files": {"fp32": FP32_FILE, **({"int8": INT8_FILE} if quantize else {})},
        "quantization": quantize, "fused_operators": fused, "forced": force,
        "source": {"run": str(run_dir.resolve()) if run_dir else None, "name": run_manifest.get("name"),
                   "weights": weights_fingerprint(run_dir) if run_dir else None},
        "run_manifest": run_manifest,
        "versions": {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
