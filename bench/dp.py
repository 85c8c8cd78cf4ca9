"""What differential privacy costs: SST-2 accuracy of minilm + LoRA trained with DP-SGD at ε = 8 and ε = 3 against
the same run without privacy.

    python bench/dp.py                        # ~15 minutes on 2 cores
    python bench/dp.py --train 4000 --epochs 3 --work runs/dp   # keep the run folders

``--train`` sentences of SST-2's train.jsonl (shuffled with seed 0), scored on the 872 validation sentences. Three
runs through the CLI with the same data, batch size, learning rate, epochs (so the same number of steps, and the
same expected batch) and fp32: no privacy; ``--dp-epsilon 8``; ``--dp-epsilon 3``; δ = 1/n (n training sentences),
per-example clipping norm ``--max-grad-norm``, PRV accountant. No dev set during training (every run keeps its
last weights). Writes bench/results/dp.json.

Anchor: Li et al. 2021 (*Large language models can be strong differentially private learners*, ICLR 2022) fine-tune
RoBERTa-base and -large on the full SST-2 (67k sentences) with DP (full fine-tuning, their DP hyperparameters:
large batches, small clipping norm) and lose a few points of accuracy against non-private training at ε = 3 and
ε = 8; their exact figures are in their table 1 (not reproduced here).
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, print_table, tuneforge, write_jsonl, write_result  # noqa: E402

ANCHOR = {"source": "Li et al. 2021, Large language models can be strong differentially private learners (ICLR 2022), "
                    "table 1",
          "setting": "full SST-2 (67k sentences), RoBERTa-base/large, full fine-tuning, delta ~ 1/(2n)",
          "finding": "a few points of accuracy lost against non-private training at epsilon = 3 and 8"}


def _sst2() -> Path | None:
    import os

    env = os.environ.get("TUNEFORGE_SHARED_DIR")
    d = (Path(env) if env else ROOT.parent / "shared") / "datasets" / "sst2"
    return d if (d / "train.jsonl").is_file() and (d / "validation.jsonl").is_file() else None


def run_one(name: str, work: Path, train: Path, test: Path, common: list[str], *flags: str) -> dict[str, Any]:
    out = work / f"run-{name}"
    train_s = tuneforge("train", "--task", "classification", "--data", str(train), "--output", str(out), *common,
                        *flags, log=work / f"{name}-train.log")
    eval_s = tuneforge("evaluate", str(out), "--data", str(test), "--name", "validation",
                       log=work / f"{name}-eval.log")
    manifest = json.loads((out / "tuneforge.json").read_text())
    metrics = json.loads((out / "eval-validation" / "metrics.json").read_text())
    return {"run": name, "accuracy": metrics["accuracy"], "macro_f1": metrics.get("macro_f1"),
            "privacy": manifest.get("privacy"), "steps": manifest["training"]["steps"],
            "train_seconds": manifest["training"]["train_seconds"], "train_cmd_s": round(train_s, 1),
            "eval_cmd_s": round(eval_s, 1), "final_loss": manifest["training"]["final_loss"]}


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=2000, help="SST-2 training sentences (default 2000)")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--batch-size", type=int, default=32, help="the (expected) batch size of every run")
    ap.add_argument("--lr", type=float, default=None,
                    help="peak learning rate (default: auto, LoRA on minilm: 5e-4 for the adapters, 1e-3 for the head)")
    ap.add_argument("--max-grad-norm", type=float, default=1.0, help="DP: per-example clipping norm")
    ap.add_argument("--epsilons", default="8,3")
    ap.add_argument("--work", type=Path, default=None, help="keep the run folders here (default: a temporary one)")
    ap.add_argument("--name", default="dp", help="bench/results/NAME.json")
    a = ap.parse_args(argv)
    sst2 = _sst2()
    if sst2 is None:
        print("skipped: SST-2 is not at ../shared/datasets/sst2 (set TUNEFORGE_SHARED_DIR to the folder holding "
              "datasets/)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = [json.loads(line) for line in (sst2 / "train.jsonl").open(encoding="utf-8")]
        random.Random(0).shuffle(rows)
        train = write_jsonl(work / "sst2-train.jsonl", rows[:a.train])
        test = sst2 / "validation.jsonl"
        delta = 1.0 / a.train
        common = ["--base-model", "minilm", "--method", "lora", "--epochs", f"{a.epochs:g}", "--batch-size",
                  str(a.batch_size), "--precision", "fp32", "--seed", "42", *(["--lr", f"{a.lr:g}"] if a.lr else [])]
        results = [run_one("non-private", work, train, test, common)]
        for eps in [float(e) for e in a.epsilons.split(",")]:
            results.append(run_one(f"dp-eps{eps:g}", work, train, test, common, "--dp-epsilon", f"{eps:g}",
                                   "--dp-delta", repr(delta), "--dp-max-grad-norm", f"{a.max_grad_norm:g}"))
    base = results[0]["accuracy"]
    table = []
    for r in results:
        p = r["privacy"] or {}
        table.append({"run": r["run"], "target ε": p.get("target_epsilon", "∞"),
                      "spent ε": round(p["epsilon"], 3) if p else "∞", "noise σ": round(p["noise_multiplier"], 3)
                      if p else 0.0, "steps": r["steps"], "accuracy": round(100 * r["accuracy"], 2),
                      "cost (points)": round(100 * (base - r["accuracy"]), 2), "train s": r["train_seconds"]})
    print_table(table, ["run", "target ε", "spent ε", "noise σ", "steps", "accuracy", "cost (points)", "train s"])
    print(f"Anchor: {ANCHOR['source']}: {ANCHOR['setting']}: {ANCHOR['finding']}.")
    payload = {"benchmark": "dp", "dataset": "sst2", "train_sentences": a.train, "test": "validation (872)",
               "delta": delta, "base_model": "minilm", "method": "lora",
               "settings": {"epochs": a.epochs, "batch_size": a.batch_size, "learning_rate": a.lr or "auto",
                            "max_grad_norm": a.max_grad_norm, "precision": "fp32", "accountant": "prv",
                            "seed": 42},
               "command": "python bench/dp.py " + " ".join(argv),
               "results": results, "table": table, "anchor": ANCHOR, "machine": machine()}
    print(f"wrote {write_result(a.name, payload)}")


if __name__ == "__main__":
    main(sys.argv[1:])
