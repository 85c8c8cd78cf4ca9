"""In-process inference backends side by side: examples/s at batch 1 / 8 / 64 and the headline metric for torch
fp32, torch bf16, ONNX Runtime fp32 and ONNX Runtime int8 (dynamic quantization), on four small fine-tuned models.

    OMP_WAIT_POLICY=PASSIVE nice -n 5 .venv/bin/python bench/backends.py               # all four models
    .venv/bin/python bench/backends.py --work /tmp/tf-bench-backends sst2 conll2003   # some; runs kept for reuse

Each model is trained with `tuneforge train` (1 epoch on a seeded sample of ~2,000 training examples; BANKING77:
3,000 examples, 3 epochs, as one epoch leaves 77 classes near chance), exported with `tuneforge export --format
onnx --quantize int8` (its parity check on the first dev examples), and then loaded in this process by every
backend (`tuneforge.inference.backends`), which predicts the same test examples. Throughput is the best of 3 passes
over the examples at each batch size (1: 64 examples, 8: 256, 64: 512), inputs already parsed (the CLI's predict
path from there on: task encoding, forward pass, decoding). Writes bench/results/backends.json.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, read_jsonl, shared_datasets, tuneforge, write_jsonl, write_result  # noqa: E402

BACKENDS = ("torch", "torch-bf16", "onnx", "onnx-int8")
BATCHES = {1: 64, 8: 256, 64: 512}


def models(ds: Path) -> dict[str, dict[str, Any]]:
    return {
        "sst2": dict(task="classification", base="minilm", train=ds / "sst2/train.jsonl", n=2000, epochs=1,
                     test=ds / "sst2/validation.jsonl", n_test=872),
        "banking77": dict(task="classification", base="minilm", train=ds / "banking77/train.jsonl", n=3000, epochs=3,
                          test=ds / "banking77/test.jsonl", n_test=1000),
        "conll2003": dict(task="ner", base="minilm", train=ds / "conll2003/train.jsonl", n=2000, epochs=1,
                          test=ds / "conll2003/test.jsonl", n_test=1000),
        "chnsenticorp": dict(task="classification", base="e5-multilingual", train=ds / "chnsenticorp/train.jsonl",
                             n=2000, epochs=1, test=ds / "chnsenticorp/test.jsonl", n_test=1000),
    }


def sample(src: Path, n: int, dest: Path, seed: int = 0) -> Path:
    rows = read_jsonl(src)
    random.Random(seed).shuffle(rows)
    return write_jsonl(dest, rows[:n])


def prepare(name: str, spec: dict[str, Any], work: Path) -> tuple[Path, Path]:
    """The trained run (reused when its folder is there) with its ONNX export in RUN/onnx, and the test file."""
    run = work / name
    test = sample(spec["test"], spec["n_test"], work / f"{name}-test.jsonl", seed=1)
    if not (run / "tuneforge.json").is_file():
        train = sample(spec["train"], spec["n"], work / f"{name}-train.jsonl")
        secs = tuneforge("train", "--task", spec["task"], "--data", str(train), "--base-model", spec["base"],
                         "--epochs", str(spec["epochs"]), "--output", str(run), log=work / f"{name}-train.log")
        print(f"trained {name} in {secs:.0f} s", flush=True)
    if not (run / "onnx" / "onnx.json").is_file():
        secs = tuneforge("export", str(run), "--format", "onnx", "--quantize", "int8", "--overwrite", "--force",
                         log=work / f"{name}-export.log")
        print(f"exported {name} in {secs:.0f} s", flush=True)
    return run, test


def measure(run: Path, test: Path, backend: str) -> dict[str, Any]:
    from tuneforge.inference.backends import get_backend
    from tuneforge.tasks import load_dataset

    t0 = time.perf_counter()
    loaded = get_backend(backend).load_predictor(run)
    load_s = time.perf_counter() - t0
    predictor = loaded.predictor  # type: ignore[attr-defined]
    ds = load_dataset(test, predictor.task.name, require_labels=True, multi_label=predictor.multi_label)
    examples = list(ds.examples)
    preds = predictor.predict_examples(examples, batch_size=64)
    scores = predictor.task.score(preds, examples, predictor.labels, multi_label=predictor.multi_label)
    metric = predictor.task.main_metric
    row: dict[str, Any] = {"backend": backend, "metric": metric, "score": round(float(scores[metric]), 4),
                           "load_s": round(load_s, 2)}
    for batch, n in BATCHES.items():
        chunk = examples[:n]
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            predictor.predict_examples(chunk, batch_size=batch)
            best = min(best, time.perf_counter() - t)
        row[f"ex_s_b{batch}"] = round(len(chunk) / best, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="models to run (default: all)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tuneforge-bench-backends"))
    args = parser.parse_args()
    ds = shared_datasets()
    specs = models(ds)
    names = args.names or list(specs)
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    for name in names:
        spec = specs[name]
        run, test = prepare(name, spec, args.work)
        by_backend = {b: measure(run, test, b) for b in BACKENDS}
        base = by_backend["torch"]
        for b, row in by_backend.items():
            row.update({"model": name, "base_model": spec["base"], "n_test": spec["n_test"],
                        "delta_points": round((row["score"] - base["score"]) * 100, 2),
                        "speedup_b8": round(row["ex_s_b8"] / base["ex_s_b8"], 2),
                        "speedup_b64": round(row["ex_s_b64"] / base["ex_s_b64"], 2)})
            rows.append(row)
            print(f"{name} {b}: {row}", flush=True)
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    columns = ["model", "backend", "metric", "score", "delta_points", "ex_s_b1", "ex_s_b8", "ex_s_b64",
               "speedup_b8", "speedup_b64"]
    print_table(rows, columns)
    print(f"load: before {load_before} | after {load_after}")
    path = write_result("backends", {"rows": rows, "machine": machine(), "uptime_before": load_before,
                                     "uptime_after": load_after, "batches": BATCHES,
                                     "command": "OMP_WAIT_POLICY=PASSIVE nice -n 5 .venv/bin/python bench/backends.py"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
