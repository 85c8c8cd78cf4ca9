"""Benchmark of the financial-news sentiment monitor (issue #6).

1. Sentiment: fine-tune minilm through TuneForge on twitter_financial_news_sentiment/train and score it on
   validation (accuracy, macro F1; labels bearish / bullish / neutral).
2. Alerting: replay the validation items as a 30-day stream over six entities, inject negative bursts at known
   times, run the alert rules on the model's predicted labels (and on the gold labels, as the upper bound) and
   report alert precision, recall and detection delay.

    python bench/solution_monitor.py                 # train (2 epochs) + replay
    python bench/solution_monitor.py --run-dir DIR   # reuse a trained run folder
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, shared_datasets, write_result  # noqa: E402

RULES = {
    "negative_share": dict(metric="negative_share", window_minutes=240, baseline_minutes=7 * 24 * 60, threshold=3.0,
                           min_items=4, min_increase=0.25, cooldown_minutes=360),
    "negative_volume": dict(metric="negative_volume", window_minutes=240, baseline_minutes=7 * 24 * 60,
                            threshold=4.0, min_items=4, cooldown_minutes=360),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N training rows")
    ap.add_argument("--base-model", default="minilm")
    ap.add_argument("--run-dir", type=Path, default=None, help="reuse this trained run (trains into it if empty)")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--bursts", type=int, default=12)
    ap.add_argument("--burst-size", type=int, default=8)
    ap.add_argument("--burst-minutes", type=int, default=120)
    ap.add_argument("--seeds", type=int, default=5, help="streams replayed (seeds 0..N-1), scores pooled")
    ap.add_argument("--zh-limit", type=int, default=0,
                    help="also fine-tune e5-multilingual on the first N ChnSentiCorp training rows (max 128 tokens) "
                         "and score the bilingual routing on a mixed English/Chinese set (0: skip)")
    ap.add_argument("--zh-run-dir", type=Path, default=None, help="reuse this Chinese run (trains into it if empty)")
    ap.add_argument("--zh-epochs", type=float, default=2.0)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from sklearn.metrics import accuracy_score, f1_score

    from tuneforge.inference import load_predictor
    from tuneforge.solutions.monitor.detect import RuleParams
    from tuneforge.solutions.monitor.replay import build_stream, detect, pool_scores, score_alerts
    from tuneforge.training.config import TrainConfig
    from tuneforge.training.recipe import train

    data = shared_datasets() / "twitter_financial_news_sentiment"
    train_file, val_file = data / "train.jsonl", data / "validation.jsonl"
    work = Path(tempfile.mkdtemp(prefix="tf-monitor-bench-"))
    if args.limit:
        lines = train_file.read_text(encoding="utf-8").split("\n")[: args.limit]
        train_file = work / "train.jsonl"
        train_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_dir = args.run_dir or work / "run"
    train_s = None
    if not (run_dir / "tuneforge.json").exists():
        t0 = time.perf_counter()
        train(TrainConfig(task="classification", data=train_file, eval_data=val_file, output=run_dir,
                          base_model=args.base_model, epochs=args.epochs, seed=42))
        train_s = time.perf_counter() - t0

    if train_s is None:  # a reused run: its own record of the training time
        train_s = json.loads((run_dir / "tuneforge.json").read_text())["training"].get("wall_seconds")
    rows = [json.loads(x) for x in val_file.read_text(encoding="utf-8").split("\n") if x.strip()]
    texts, gold = [r["text"] for r in rows], [r["label"] for r in rows]
    predictor = load_predictor(run_dir)
    t0 = time.perf_counter()
    pred = [p["label"] for p in predictor.predict(texts)]
    predict_s = time.perf_counter() - t0
    acc = accuracy_score(gold, pred)
    f1 = f1_score(gold, pred, average="macro")
    print_table([{"model": args.base_model, "train rows": args.limit or 9543, "epochs": args.epochs,
                  "accuracy": acc, "macro F1": f1,
                  "train s": round(train_s, 1) if train_s is not None else "-"}],
                ["model", "train rows", "epochs", "accuracy", "macro F1", "train s"])

    results = []
    for rule_name, params in RULES.items():
        rule = RuleParams(**params)  # type: ignore[arg-type]
        for source, labels in (("model", pred), ("gold", gold)):
            per_seed = []
            for seed in range(args.seeds):
                stream = build_stream(gold, days=args.days, bursts=args.bursts, burst_size=args.burst_size,
                                      burst_minutes=args.burst_minutes, seed=seed)
                per_seed.append(score_alerts(stream, detect(stream, labels, rule), rule))
            results.append({"rule": rule_name, "labels": source, **pool_scores(per_seed, args.days)})
    print_table(results, ["rule", "labels", "bursts", "alerts", "precision", "recall", "false_alarms_per_day",
                          "delay_min_mean", "delay_min_median", "delay_items_mean"])
    bilingual = _bilingual(args, predictor, texts, gold, work) if args.zh_limit else None
    payload = {
        "machine": machine(), "benchmark": "solution_monitor", "base_model": args.base_model,
        "dataset": "twitter_financial_news_sentiment", "train_rows": args.limit or sum(
            1 for x in (data / "train.jsonl").read_text(encoding="utf-8").split("\n") if x.strip()),
        "validation_rows": len(rows), "epochs": args.epochs,
        "train_s": round(train_s, 1) if train_s is not None else None,
        "predict_s": round(predict_s, 1),
        "sentiment": {"accuracy": acc, "macro_f1": f1},
        "stream": {"days": args.days, "entities": 6, "bursts_per_stream": args.bursts, "burst_size": args.burst_size,
                   "burst_minutes": args.burst_minutes, "seeds": args.seeds, "rules": RULES},
        "alerting": results,
        "bilingual": bilingual,
        "command": "python " + " ".join(["bench/solution_monitor.py", *sys.argv[1:]]),
    }
    print(f"wrote {write_result('solution_monitor', payload)} (model in {run_dir})")


def _bilingual(args: argparse.Namespace, en_predictor: object, en_texts: list[str], en_gold: list[str],
               work: Path) -> dict[str, object]:
    """Fine-tune e5-multilingual on ChnSentiCorp and classify a mixed stream (400 English tweets, 400 Chinese
    reviews) through the monitor's language routing: routing accuracy, and accuracy per language."""
    from tuneforge.inference import load_predictor
    from tuneforge.solutions.monitor.classify import SentimentClassifier, polarity
    from tuneforge.training.config import TrainConfig
    from tuneforge.training.recipe import train

    zh = shared_datasets() / "chnsenticorp"
    lines = [x for x in (zh / "train.jsonl").read_text(encoding="utf-8").split("\n") if x.strip()][: args.zh_limit]
    zh_train = work / "zh-train.jsonl"
    zh_train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_dir = args.zh_run_dir or work / "zh-run"
    t0 = time.perf_counter()
    if not (run_dir / "tuneforge.json").exists():
        train(TrainConfig(task="classification", data=zh_train, output=run_dir, base_model="e5-multilingual",
                          epochs=args.zh_epochs, max_length=128, seed=42))
    zh_train_s = time.perf_counter() - t0
    zh_rows = [json.loads(x) for x in (zh / "test.jsonl").read_text(encoding="utf-8").split("\n") if x.strip()][:400]
    zh_pred = load_predictor(run_dir)
    clf = SentimentClassifier(lambda t: list(en_predictor.predict(t)),  # type: ignore[attr-defined]
                              lambda t: list(zh_pred.predict(t)))
    texts = en_texts[:400] + [r["text"] for r in zh_rows]
    langs = ["en"] * 400 + ["zh"] * len(zh_rows)
    gold = en_gold[:400] + [r["label"] for r in zh_rows]
    out = clf(texts)
    routed = sum(o.lang == g for o, g in zip(out, langs, strict=True)) / len(out)

    def acc(lang: str) -> float:
        pairs = [(o, y) for o, y, g in zip(out, gold, langs, strict=True) if g == lang]
        return sum(o.label == y for o, y in pairs) / len(pairs)

    polarity_acc = sum(o.polarity == polarity(y) for o, y in zip(out, gold, strict=True)) / len(out)
    row = {"zh train rows": len(lines), "routing accuracy": routed, "en accuracy": acc("en"),
           "zh accuracy": acc("zh"), "polarity accuracy (mixed)": polarity_acc, "zh train s": round(zh_train_s, 1)}
    print_table([row], list(row))
    return {"base_model_zh": "e5-multilingual", "zh_train_rows": len(lines), "zh_epochs": args.zh_epochs,
            "zh_max_length": 128,
            "test": "400 twitter validation tweets + 400 ChnSentiCorp test reviews", "routing_accuracy": routed,
            "en_accuracy": acc("en"), "zh_accuracy": acc("zh"), "polarity_accuracy": polarity_acc,
            "zh_train_s": round(zh_train_s, 1)}


if __name__ == "__main__":
    main()
