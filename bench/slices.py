"""Fairness slices and robustness of an SST-2 classifier: ``tuneforge evaluate --slice-by ... --robustness``.

    python bench/slices.py                   # ~10 minutes on 2 cores
    python bench/slices.py --work runs/sl    # keep the run folder (default: a temporary folder)
    python bench/slices.py --train 2000 --epochs 3

A minilm run trained through the CLI on ``--train`` SST-2 training sentences (shuffled with seed 0; a 500-sentence
dev set from the rest), then evaluated on the 872 validation sentences sliced by

- ``length``: the built-in word-count buckets (short <= 10 < medium <= 25 < long words);
- ``metadata.has_negation``: a column this script derives from the text and writes into each record's
  ``metadata`` object: ``yes`` when the sentence holds a negation word (not, n't, no, never, nothing, nobody,
  none, neither, nor, without, hardly, barely) as a whole token, else ``no``. It is not an annotation of SST-2;
  negation is a known hard case for sentiment models, so the slice shows whether this one is;
- ``has_number``: the built-in digit check;

with ``--robustness`` (seed 0): the accuracy drop under each perturbation. Prints the tables and writes
bench/results/slices.json. Skipped (exit 0, with the reason) when ../shared/datasets/sst2 is not there.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, print_table, tuneforge, write_jsonl, write_result  # noqa: E402

NEGATION = re.compile(r"(?:^|\s)(?:not|n't|no|never|nothing|nobody|none|neither|nor|without|hardly|barely)(?=\s|$)")


def sst2_dir() -> Path | None:
    env = os.environ.get("TUNEFORGE_SHARED_DIR")
    d = (Path(env) if env else ROOT.parent / "shared") / "datasets" / "sst2"
    return d if (d / "train.jsonl").is_file() and (d / "validation.jsonl").is_file() else None


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None, help="keep the run folder here")
    ap.add_argument("--train", type=int, default=2000, help="SST-2 training sentences")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--name", default="slices", help="results file bench/results/NAME.json")
    a = ap.parse_args(argv)
    d = sst2_dir()
    if d is None:
        print("skipped: the SST-2 files are not at ../shared/datasets/sst2 (set TUNEFORGE_SHARED_DIR)")
        return
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tf-bench-slices-") as tmp:
        work = a.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = [json.loads(line) for line in (d / "train.jsonl").open(encoding="utf-8")]
        random.Random(0).shuffle(rows)
        train = write_jsonl(work / "train.jsonl", rows[:a.train])
        dev = write_jsonl(work / "dev.jsonl", rows[a.train:a.train + 500])
        val = [json.loads(line) for line in (d / "validation.jsonl").open(encoding="utf-8")]
        test = write_jsonl(work / "validation.jsonl", [
            {**r, "metadata": {"has_negation": "yes" if NEGATION.search(r["text"].lower()) else "no"}} for r in val])
        run = work / "run"
        train_args = ["train", "--task", "classification", "--data", str(train), "--eval-data", str(dev),
                      "--base-model", "minilm", "--epochs", str(a.epochs), "--seed", "42", "--output", str(run)]
        train_s = tuneforge(*train_args, log=work / "train.log")
        eval_args = ["evaluate", str(run), "--data", str(test), "--slice-by", "length", "--slice-by",
                     "metadata.has_negation", "--slice-by", "has_number", "--robustness", "--output",
                     str(work / "eval")]
        eval_s = tuneforge(*eval_args, log=work / "eval.log")
        m = json.loads((work / "eval" / "metrics.json").read_text(encoding="utf-8"))

        slice_rows = [{"slicer": slicer, "slice": value, "n": s["n"], "accuracy": s["accuracy"],
                       "macro F1": s["macro_f1"], "gap": s["gap"], "flagged": "yes" if s["flagged"] else ""}
                      for slicer, table in m["slices"].items() for value, s in table.items()]
        fair_rows = [{"slicer": slicer, "difference": s["difference"], "worst": s["worst"],
                      "demographic parity diff": s.get("demographic_parity_difference"),
                      "equalized odds diff": s.get("equalized_odds_difference")}
                     for slicer, s in m["slice_summary"].items()]
        pert = m["robustness"]["perturbations"]
        robust_rows = [{"perturbation": k, "changed": r.get("changed", "skipped"), "accuracy": r.get("perturbed"),
                        "drop": r.get("drop"), "drop on changed": r.get("drop_on_changed"),
                        "predictions changed": r.get("prediction_changed"), "note": r.get("skipped", "")}
                       for k, r in pert.items()]
        print(f"overall accuracy {m['accuracy']:.4f} on {m['n']} validation sentences")
        print_table(slice_rows, ["slicer", "slice", "n", "accuracy", "macro F1", "gap", "flagged"])
        print_table(fair_rows, ["slicer", "difference", "worst", "demographic parity diff", "equalized odds diff"])
        print_table(robust_rows, ["perturbation", "changed", "accuracy", "drop", "drop on changed",
                                  "predictions changed", "note"])
        payload = {"machine": machine(), "wall_s": round(time.perf_counter() - t0, 1),
                   "setup": {"base_model": "minilm", "train": a.train, "dev": 500, "epochs": a.epochs,
                             "test": "sst2 validation (872)", "seed": 42, "robustness_seed": 0,
                             "has_negation": "derived from the text by this script: a negation word as a token"},
                   "commands": {"train": "tuneforge " + " ".join(train_args[:-1]) + " RUN",
                                "evaluate": "tuneforge evaluate RUN --data validation.jsonl --slice-by length "
                                            "--slice-by metadata.has_negation --slice-by has_number --robustness"},
                   "train_cmd_s": round(train_s, 1), "eval_cmd_s": round(eval_s, 1),
                   "overall": {k: v for k, v in m.items() if isinstance(v, int | float)},
                   "slices": slice_rows, "slice_summary": m["slice_summary"], "robustness": robust_rows}
        path = write_result(a.name, payload)
        print(f"wrote {path} ({payload['wall_s']:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
