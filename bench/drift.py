"""Drift detection on real data: does the drift score flag another domain and leave in-distribution windows alone?

    python bench/drift.py                       # ~10 minutes on 2 busy cores (training included)
    python bench/drift.py --work runs/drift     # keep the run folder; a second call reuses it
    python bench/drift.py --windows 20 --window 200

A minilm classifier trained through the CLI on the first 600 SST-2 train lines, 1 epoch (as the acceptance check
``11-lifecycle`` does); its training file is the reference (all 600 lines). Each window is reported on as
``tuneforge drift`` does (:func:`tuneforge.evaluation.drift.drift_report`: the domain classifier's ROC AUC on the
model's embeddings is the score, threshold 0.6):

- ``sst2-train-heldout``: ``--windows`` random windows of ``--window`` SST-2 train lines the model never saw
  (lines 601 on): the false-alarm rate;
- ``sst2-validation``: random windows of the SST-2 validation set, against the training file, and against a
  reference of SST-2 train lines sampled to the validation set's length distribution (SST-2 train holds phrases of
  the parse trees, 9.4 words on average; validation only whole sentences, 19.5 words);
- ``finance-tweets``: random windows of twitter_financial_news_sentiment validation: the detection rate;
- the acceptance check's two windows (train lines 601-900, the first 300 finance tweets).

Also the ROC AUC of a domain classifier on the word count alone (what length by itself gives away). Writes
bench/results/drift.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, read_jsonl, shared_datasets, tuneforge, write_jsonl, write_result  # noqa: E402

TRAIN_ARGS = ["--base-model", "minilm", "--epochs", "1"]


def train(ds: Path, work: Path) -> tuple[Path, Path, float | None]:
    run, data = work / "run-sst2-600", work / "sst2-train-600.jsonl"
    rows = read_jsonl(ds / "sst2" / "train.jsonl")
    write_jsonl(data, rows[:600])
    if (run / "tuneforge.json").is_file():
        return run, data, None
    seconds = tuneforge("train", "--task", "classification", "--data", str(data), "--output", str(run), *TRAIN_ARGS,
                        log=work / "train.log")
    return run, data, seconds


def _length_auc(reference: list[dict[str, Any]], current: list[dict[str, Any]]) -> float:
    import numpy as np

    from tuneforge.evaluation.drift.stats import domain_classifier_auc

    def lengths(rows: list[dict[str, Any]]) -> np.ndarray:
        return np.array([[len(r["text"].split())] for r in rows], dtype=float)

    return domain_classifier_auc(lengths(reference), lengths(current))


def _length_matched(pool: list[dict[str, Any]], target: list[dict[str, Any]], n: int, seed: int) -> list[dict]:
    """``n`` rows of ``pool`` whose word counts follow ``target``'s (buckets of 3 words)."""
    rng = random.Random(seed)
    buckets: dict[int, list[dict[str, Any]]] = {}
    for r in pool:
        buckets.setdefault(len(r["text"].split()) // 3, []).append(r)
    out = []
    for _ in range(n):
        want = len(rng.choice(target)["text"].split()) // 3
        while want not in buckets and want > 0:
            want -= 1
        out.append(rng.choice(buckets.get(want) or pool))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="keep the run folder here (reused when it is there)")
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--window", type=int, default=200)
    args = ap.parse_args()

    ds = shared_datasets()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-drift-"))
    work.mkdir(parents=True, exist_ok=True)
    run, train_file, train_seconds = train(ds, work)

    from tuneforge.evaluation.drift import RunModel, drift_report, load_examples, reference_key

    model = RunModel(run)
    reference = load_examples(train_file, model.task)
    sst_train = read_jsonl(ds / "sst2" / "train.jsonl")
    heldout = sst_train[600:]
    validation = read_jsonl(ds / "sst2" / "validation.jsonl")
    finance = read_jsonl(ds / "twitter_financial_news_sentiment" / "validation.jsonl")
    matched = _length_matched(heldout, validation, 600, seed=0)

    def report(ref: list[dict[str, Any]], rows: list[dict[str, Any]], key: tuple[Any, ...]) -> dict[str, Any]:
        t0 = time.perf_counter()
        r = drift_report(model, ref, [{"text": x["text"], "text_pair": None, "label": None} for x in rows],
                         reference_key=key, cache=model.reference_cache)
        return {"score": r.score, "drift": r.drift, "seconds": time.perf_counter() - t0,
                "mmd_p_value": r.details["embedding"]["mmd_p_value"],
                "label_psi": r.details["predictions"]["psi"],
                "confidence_drop": r.details["predictions"]["confidence_drop"],
                "unseen_word_rate": r.details["vocabulary"]["unseen_word_rate"]}

    train_key = reference_key(train_file)
    matched_ref = [{"text": x["text"], "text_pair": None, "label": None} for x in matched]
    suites = [("sst2-train-heldout", heldout, reference, train_key, "training file"),
              ("sst2-validation", validation, reference, train_key, "training file"),
              ("sst2-validation", validation, matched_ref, ("length-matched",), "SST-2 train, length-matched"),
              ("finance-tweets", finance, reference, train_key, "training file")]
    rows, results = [], []
    for name, pool, ref, key, ref_name in suites:
        rng = random.Random(1)
        reports = [report(ref, rng.sample(pool, args.window), key) for _ in range(args.windows)]
        scores = [x["score"] for x in reports]
        row = {"window_from": name, "reference": ref_name, "windows": len(reports), "window": args.window,
               "alert_rate": sum(x["drift"] for x in reports) / len(reports), "mean_score": statistics.mean(scores),
               "min_score": min(scores), "max_score": max(scores),
               "mean_label_psi": statistics.mean(x["label_psi"] for x in reports),
               "mean_confidence_drop": statistics.mean(x["confidence_drop"] for x in reports),
               "mmd_p_below_0.05": sum(x["mmd_p_value"] < 0.05 for x in reports) / len(reports),
               "mean_seconds": statistics.mean(x["seconds"] for x in reports[1:] or reports),
               "length_only_auc": _length_auc([{"text": e["text"]} for e in ref], pool)}
        rows.append(row)
        results.append({**row, "reports": reports})
        print(f"{name} against the {ref_name}: alert rate {row['alert_rate']:.2f}, mean score "
              f"{row['mean_score']:.3f}", file=sys.stderr, flush=True)
    acceptance = {"same (train 601-900)": report(reference, sst_train[600:900], train_key),
                  "other (first 300 finance tweets)": report(reference, finance[:300], train_key)}
    print_table(rows, ["window_from", "reference", "windows", "alert_rate", "mean_score", "min_score", "max_score",
                       "mean_label_psi", "mean_confidence_drop", "mmd_p_below_0.05", "length_only_auc",
                       "mean_seconds"])
    print(json.dumps({k: {"score": v["score"], "drift": v["drift"]} for k, v in acceptance.items()}, indent=1))
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    path = write_result("drift", {"model": "minilm, 600 SST-2 train lines, 1 epoch", "threshold": 0.6,
                                  "method": "domain_classifier_auc", "train_seconds": train_seconds,
                                  "suites": results, "acceptance": acceptance, "machine": machine(), "load": load})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
