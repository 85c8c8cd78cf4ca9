"""Benchmark of the text recommender on MovieLens 100K (split u1): HR@10 and NDCG@10, warm and cold-start items.

Protocol (printed with the table and written to bench/results/solution_recommender.json):

- Train on ``interactions_u1_base.csv``, test on ``interactions_u1_test.csv``. A rating >= 4 is a positive (a
  "like"); the training history of a user counts every rating as seen.
- Cold start: a seeded ``--cold-fraction`` of all items is held out of training entirely (their training
  interactions are removed before anything is fitted, the encoder included).
- Warm: for each test user with at least one positive on a warm item, every warm item the user has not rated in
  training is ranked (full ranking, no sampled negatives). HR@10 = the share of users with at least one test
  positive in the top 10; NDCG@10 with binary relevance, ideal DCG over min(#positives, 10).
- Cold: for each test user with a positive on a held-out item, the held-out items are ranked (none was seen).
  Popularity and item-kNN have no signal for them (a seeded random ranking is shown instead).
- Rows: popularity, item-kNN, text two-tower with the base encoder (no fine-tuning), text two-tower fine-tuned on
  the training interactions, hybrid (retrieval by both, re-ranked by the blend tuned on a validation split).

Run: ``OMP_NUM_THREADS=1 python bench/solution_recommender.py`` (about 6 minutes on 2 shared CPU cores;
``--steps`` trades time for accuracy, ``--base-model bert-tiny --steps 20`` is a quick check).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tuneforge.solutions.recommender.data import load_interactions, load_items  # noqa: E402
from tuneforge.solutions.recommender.metrics import rank_metrics  # noqa: E402
from tuneforge.solutions.recommender.model import Recommender, RecommenderConfig, train_recommender  # noqa: E402


def _random_row(model: Recommender, test: list, pool: list[str], seed: int, k: int = 10) -> dict[str, float]:
    idx = {it: i for i, it in enumerate(pool)}
    by_user: dict[str, list[int]] = {}
    for x in test:
        if x.item in idx and (x.rating is None or x.rating >= model.config.positive_threshold):
            by_user.setdefault(x.user, []).append(idx[x.item])
    users = sorted(by_user)
    scores = np.random.default_rng(seed).random((len(users), len(pool)))
    return rank_metrics(scores, [np.array(by_user[u]) for u in users], k=k)


class _Progress:
    """Prints a training stage's progress at most every 30 seconds."""

    def __init__(self, name: str, t0: float) -> None:
        self.name, self.t0, self.last = name, t0, 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if time.perf_counter() - self.last > 30 or done == total:
            self.last = time.perf_counter()
            print(f"  [{self.name}] {stage} {done}/{total} ({self.last - self.t0:.0f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "movielens_100k")
    ap.add_argument("--base-model", default="minilm")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--train-layers", type=int, default=2)
    ap.add_argument("--cold-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "solution_recommender.json")
    args = ap.parse_args()
    if not (args.data / "interactions_u1_base.csv").exists():
        sys.exit(f"MovieLens 100K not found at {args.data} (pass --data)")

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    t_all = time.perf_counter()
    train = load_interactions(args.data / "interactions_u1_base.csv")
    test = load_interactions(args.data / "interactions_u1_test.csv")
    items = load_items(args.data / "items.jsonl")
    rng = np.random.default_rng(args.seed)
    ids = [it.item_id for it in items]
    cold = sorted(rng.choice(ids, size=int(round(args.cold_fraction * len(ids))), replace=False).tolist())
    cold_set = set(cold)
    warm = [i for i in ids if i not in cold_set]
    train_warm = [x for x in train if x.item not in cold_set]
    print(f"train {len(train_warm):,} interactions (of {len(train):,}; {len(cold)} items held out), "
          f"test {len(test):,}, items {len(items):,}", flush=True)

    rows: dict[str, dict[str, dict[str, float]]] = {}
    timings: dict[str, float] = {}
    configs = {"base": RecommenderConfig(base_model=args.base_model, steps=0, seed=args.seed),
               "fine-tuned": RecommenderConfig(base_model=args.base_model, steps=args.steps,
                                               batch_size=args.batch_size, lr=args.lr,
                                               train_layers=args.train_layers, seed=args.seed)}
    infos = {}
    for name, config in configs.items():
        t0 = time.perf_counter()
        model = train_recommender(train_warm, items, config, on_progress=_Progress(name, t0))
        timings[f"train {name}"] = round(time.perf_counter() - t0, 1)
        infos[name] = model.info | {"blend": vars(model.blend)}
        warm_res = model.evaluate(test, pool=warm)
        cold_res = model.evaluate(test, pool=cold, modes=("text", "hybrid"))
        if name == "base":
            rows["popularity"] = {"warm": warm_res["popularity"],
                                  "cold": _random_row(model, test, cold, args.seed) | {"note": "random"}}
            rows["item-kNN"] = {"warm": warm_res["knn"],
                                "cold": _random_row(model, test, cold, args.seed) | {"note": "random"}}
            rows["text two-tower (base encoder)"] = {"warm": warm_res["text"], "cold": cold_res["text"]}
            rows["hybrid (base encoder)"] = {"warm": warm_res["hybrid"], "cold": cold_res["hybrid"]}
        else:
            rows["text two-tower (fine-tuned)"] = {"warm": warm_res["text"], "cold": cold_res["text"]}
            rows["hybrid (fine-tuned text + item-kNN)"] = {"warm": warm_res["hybrid"], "cold": cold_res["hybrid"]}
    wall = time.perf_counter() - t_all

    print(f"\nMovieLens 100K u1, {args.base_model}, {args.steps} fine-tuning steps, seed {args.seed}; "
          f"{len(cold)} cold items ({args.cold_fraction:.0%})")
    print(f"{'method':38s} {'warm HR@10':>10s} {'warm NDCG@10':>12s} {'cold HR@10':>10s} {'cold NDCG@10':>12s}")
    for name, r in rows.items():
        note = " (random)" if r["cold"].get("note") else ""
        print(f"{name:38s} {r['warm']['HR@10']:10.3f} {r['warm']['NDCG@10']:12.3f} {r['cold']['HR@10']:10.3f} "
              f"{r['cold']['NDCG@10']:12.3f}{note}")
    first = next(iter(rows.values()))
    print(f"users evaluated: warm {first['warm']['users']}, cold {first['cold']['users']}; wall time {wall:.0f} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {"dataset": "movielens_100k u1", "base_model": args.base_model, "steps": args.steps,
              "batch_size": args.batch_size, "lr": args.lr, "train_layers": args.train_layers,
              "cold_fraction": args.cold_fraction, "seed": args.seed, "cold_items": len(cold),
              "protocol": __doc__.split("Protocol")[1].split("Run:")[0].strip(), "rows": rows,
              "models": infos, "timings_s": timings, "wall_s": round(wall, 1), "threads": torch.get_num_threads(),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
