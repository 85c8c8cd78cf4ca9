"""Federated LoRA fine-tuning on BANKING77 (issue 22): 5 silos split from the training set by Dirichlet(0.5)
label skew, 10 rounds of FedAvg (1 local epoch each), against centralized LoRA training on the union of the silos
for the same number of passes over the data (10 epochs), both on minilm and scored on the same test sentences;
and the bytes exchanged per round (adapters + head against the full model).

Data (../shared/datasets/banking77; the benchmark stops with a message when it is absent): a seeded random
``--train-n`` sentences of train.jsonl (default 3,000: all 77 intents, ~39 each) and ``--test-n`` of test.jsonl
(default 1,000). Both runs are ``tuneforge`` commands with the same auto batch size and learning rate (both are
prepared on the same union file); the centralized run has no dev file (no best-epoch pick on the test sentences)
and is scored by ``tuneforge evaluate``; the federated run is scored after its last round by the server.

    python bench/federated.py                    # ~20 min on 2 cores
    python bench/federated.py --train-n 1000 --rounds 3   # a quick look

Writes bench/results/federated.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, read_jsonl, shared_datasets, tuneforge, write_jsonl, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-n", type=int, default=3000)
    ap.add_argument("--test-n", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--base-model", default="minilm")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of the simulation (default: all)")
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()

    d = shared_datasets() / "banking77"
    if not (d / "train.jsonl").is_file():
        sys.exit(f"BANKING77 is not at {d}: skipping the federated benchmark")
    rng = random.Random(args.seed)
    train = rng.sample(read_jsonl(d / "train.jsonl"), args.train_n)
    test = rng.sample(read_jsonl(d / "test.jsonl"), args.test_n)
    known = {r["label"] for r in train}
    test = [r for r in test if r["label"] in known]

    with tempfile.TemporaryDirectory(prefix="bench-federated-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        train_f, test_f = write_jsonl(work / "train.jsonl", train), write_jsonl(work / "test.jsonl", test)
        fed_dir, cen_dir = work / "federated", work / "centralized"
        fed_s = tuneforge("federated", "--data", str(train_f), "--split", f"dirichlet:{args.alpha:g}", "--clients",
                          str(args.clients), "--rounds", str(args.rounds), "--epochs", "1", "--eval-data",
                          str(test_f), "--base-model", args.base_model, "--seed", str(args.seed), "--output",
                          str(fed_dir), "--overwrite", *(["--cpus", str(args.cpus)] if args.cpus else []),
                          log=work / "federated.log")
        fed = json.loads((fed_dir / "tuneforge.json").read_text())
        cen_s = tuneforge("train", "--task", "classification", "--method", "lora", "--data", str(train_f),
                          "--epochs", str(args.rounds), "--base-model", args.base_model, "--seed", str(args.seed),
                          "--output", str(cen_dir), "--overwrite", log=work / "centralized.log")
        tuneforge("evaluate", str(cen_dir), "--data", str(test_f), log=work / "centralized-eval.log")
        cen_metrics = json.loads(next(cen_dir.glob("eval-*/metrics.json")).read_text())
        cen = json.loads((cen_dir / "tuneforge.json").read_text())

    f = fed["federated"]
    b = f["bytes_per_round"]
    last = f["per_round"][-1]
    rows = [
        {"run": f"FedAvg, {args.clients} silos, Dirichlet({args.alpha:g}), {args.rounds} rounds x 1 local epoch",
         "accuracy": last["accuracy"], "macro_f1": last["macro_f1"], "wall_s": round(fed_s, 1),
         "MB/round": round(b["adapters_and_head_total"] / 1e6, 2)},
        {"run": f"centralized LoRA on the union, {args.rounds} epochs", "accuracy": cen_metrics["accuracy"],
         "macro_f1": cen_metrics["macro_f1"], "wall_s": round(cen_s, 1), "MB/round": "-"},
        {"run": "full-model FedAvg (not run): bytes per round", "accuracy": "-", "macro_f1": "-", "wall_s": "-",
         "MB/round": round(b["full_model_total"] / 1e6, 1)},
    ]
    print_table(rows, ["run", "accuracy", "macro_f1", "wall_s", "MB/round"])
    curve = [(r["round"], r.get("accuracy")) for r in f["per_round"]]
    print("global accuracy by round:", ", ".join(f"{r}: {a:.3f}" for r, a in curve if a is not None))
    print(f"label skew: {f['label_skew']}; silo sizes {[s['examples'] for s in f['silos']]}")
    print(f"bytes per client per direction: adapters+head {b['adapters_and_head_per_client']:,}, "
          f"full model {b['full_model_per_client']:,} ({b['reduction']}x)")
    path = write_result("federated", {
        "benchmark": "federated LoRA on BANKING77 (issue 22)",
        "data": {"train_sentences": len(train), "test_sentences": len(test), "intents": len(known),
                 "seed": args.seed, "source": "../shared/datasets/banking77 (random subsample)"},
        "base_model": args.base_model,
        "federated": {"clients": f["clients"], "rounds": f["rounds"], "strategy": f["strategy"],
                      "split": f["split"], "silo_sizes": [s["examples"] for s in f["silos"]],
                      "label_skew": f["label_skew"], "accuracy": last["accuracy"], "macro_f1": last["macro_f1"],
                      "accuracy_by_round": [{"round": r, "accuracy": a} for r, a in curve],
                      "bytes_per_round": b, "wall_seconds": round(fed_s, 1),
                      "learning_rate": fed["resolved"]["encoder_learning_rate"],
                      "batch_size": fed["resolved"]["batch_size"]},
        "centralized": {"epochs": args.rounds, "accuracy": cen_metrics["accuracy"],
                        "macro_f1": cen_metrics["macro_f1"], "wall_seconds": round(cen_s, 1),
                        "learning_rate": cen["resolved"]["encoder_learning_rate"],
                        "batch_size": cen["resolved"]["batch_size"]},
        "gap_accuracy": round(cen_metrics["accuracy"] - last["accuracy"], 4),
        "machine": machine(),
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
