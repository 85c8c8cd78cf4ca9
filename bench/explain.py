"""Faithfulness and cost of the explanations (integrated gradients) on SST-2.

    python bench/explain.py                          # ~10 minutes on 2 cores (training included)
    python bench/explain.py --work runs/explain      # keep the run folder; a second call reuses it
    python bench/explain.py --train 2000 --examples 200 --steps 50

A minilm classifier trained through the CLI on ``--train`` SST-2 train sentences (shuffled with seed 0; a
500-sentence dev set from the rest), 3 epochs, seed 42; then ``--examples`` sentences of the validation set
(the first ones) explained with ``tuneforge.evaluation.explain`` as ``tuneforge explain`` does (the predicted
label, ``--steps`` integration steps), one at a time.

Comprehensiveness (DeYoung et al. 2020, ERASER): the drop of the predicted label's probability when the k words
with the highest attribution are deleted, against deleting k random words (mean of 3 draws per sentence), for
k = 1, 3, 5 and 20% of the words (at least one, at most all but one). Also: the convergence delta (|sum of the
attributions - (logit - baseline logit)|) and the wall time per explanation. Writes bench/results/explain.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, shared_datasets, tuneforge, write_jsonl, write_result  # noqa: E402

TRAIN_ARGS = ["--base-model", "minilm", "--epochs", "3", "--seed", "42"]
KS: list[int | str] = [1, 3, 5, "20%"]


def train(ds: Path, work: Path, n_train: int) -> tuple[Path, float | None]:
    run = work / f"run-sst2-{n_train}"
    if (run / "tuneforge.json").is_file():
        return run, None
    rows = [json.loads(line) for line in (ds / "sst2" / "train.jsonl").open()]
    random.Random(0).shuffle(rows)
    tr = write_jsonl(work / "sst2-train.jsonl", rows[:n_train])
    dev = write_jsonl(work / "sst2-dev.jsonl", rows[n_train:n_train + 500])
    seconds = tuneforge("train", "--task", "classification", "--data", str(tr), "--eval-data", str(dev),
                        "--output", str(run), *TRAIN_ARGS, log=work / "train.log")
    return run, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="keep the run folder here (reused when it is there)")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()

    ds = shared_datasets()
    if not (ds / "sst2" / "validation.jsonl").is_file():
        sys.exit(f"skipped: SST-2 is not at {ds / 'sst2'}")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-explain-"))
    work.mkdir(parents=True, exist_ok=True)
    run, train_s = train(ds, work, args.train)

    import numpy as np

    from tuneforge.evaluation.explain import Explainer, comprehensiveness
    from tuneforge.inference import load_predictor

    load_before = os.getloadavg()
    predictor = load_predictor(run)
    explainer = Explainer(predictor)
    rows = [json.loads(line) for line in (ds / "sst2" / "validation.jsonl").open()][: args.examples]
    explainer.explain([rows[0]["text"]], steps=args.steps)  # warm-up: first-call costs are not per explanation
    seconds, deltas, correct = [], [], []
    drops: dict[str, dict[str, list[float]]] = {str(k): {"ig": [], "random": []} for k in KS}
    for i, row in enumerate(rows):
        t0 = time.perf_counter()
        [e] = explainer.explain([row["text"]], steps=args.steps)
        seconds.append(time.perf_counter() - t0)
        deltas.append(abs(e.convergence_delta))
        correct.append(e.label == row["label"])
        n_words = len(e.attributions)
        for k in KS:
            kk = max(1, round(0.2 * n_words)) if k == "20%" else int(k)
            r = comprehensiveness(predictor, row["text"], e, kk, seed=i)
            drops[str(k)]["ig"].append(r["ig"])
            drops[str(k)]["random"].append(r["random"])
        if (i + 1) % 50 == 0:
            print(f"{i + 1}/{len(rows)} explained", flush=True)

    table = []
    for k in KS:
        ig, rnd = np.array(drops[str(k)]["ig"]), np.array(drops[str(k)]["random"])
        table.append({"k": str(k), "ig_comprehensiveness": round(float(ig.mean()), 4),
                      "random_comprehensiveness": round(float(rnd.mean()), 4),
                      "ig_minus_random": round(float((ig - rnd).mean()), 4),
                      "share_ig_above_random": round(float((ig > rnd).mean()), 4)})
    print_table(table, list(table[0]))
    timing = {"mean_s": round(statistics.mean(seconds), 4), "median_s": round(statistics.median(seconds), 4),
              "p95_s": round(float(np.percentile(seconds, 95)), 4)}
    delta = {"mean_abs": round(float(np.mean(deltas)), 5), "median_abs": round(float(np.median(deltas)), 5),
             "max_abs": round(float(np.max(deltas)), 5),
             "share_below_0.1": round(float(np.mean(np.array(deltas) < 0.1)), 4)}
    print(f"time per explanation ({args.steps} steps): mean {timing['mean_s']:.3f} s, median {timing['median_s']:.3f} "
          f"s, p95 {timing['p95_s']:.3f} s")
    print(f"|convergence delta|: mean {delta['mean_abs']:.4f}, max {delta['max_abs']:.4f}, "
          f"{100 * delta['share_below_0.1']:.1f}% below 0.1; accuracy of the explained predictions "
          f"{np.mean(correct):.3f}")
    path = write_result("explain", {
        "dataset": "sst2 validation", "examples": len(rows), "train_sentences": args.train, "base_model": "minilm",
        "steps": args.steps, "train_cmd_s": round(train_s, 1) if train_s is not None else None,
        "accuracy": round(float(np.mean(correct)), 4), "comprehensiveness": table, "time_per_explanation": timing,
        "convergence_delta": delta, "machine": machine(),
        # other work on the machine slows the timing down: the 1-minute load average before and after
        "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
