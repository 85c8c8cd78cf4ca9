"""Continual re-training: how much a model forgets, and how much replay (and EWC) keeps.

    python bench/forgetting.py                       # ~15-25 minutes on 2 loaded cores
    python bench/forgetting.py --per-intent 30 --epochs 2 --test-per-intent 20 --ewc 10
    python bench/forgetting.py --only-ewc --ewc 1,100 --name forgetting-ewc   # a sweep of EWC's lambda

BANKING77, minilm. The intents in labels.txt order: the first 40 ("old") and the other 37 ("new"). ``--per-intent``
training examples of each (train.jsonl shuffled with seed 0), ``--test-per-intent`` test sentences of each
(test.jsonl). Version 1 is fine-tuned on the old intents and registered in a local registry (a temporary folder);
then ``retrain`` (the code path of ``tuneforge retrain``, warm start from version 1's weights) continues it on the
new intents with no replay, 10% and 30% replay (a fraction of the new data's size, stratified by intent) and,
with ``--ewc``, 10% replay plus EWC at each lambda given. The reference trains on all 77 intents at once. Each
model's accuracy on the old intents' test sentences, the new ones' and all of them; writes
bench/results/forgetting.json.

Note: TuneForge trains the labels present in the training data, so with no replay the re-trained model has only
the 37 new intents and its accuracy on the old ones is 0 by construction (the retrain warns about it); any replay
keeps every old intent in the label set (at least one example each).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, read_jsonl, shared_datasets, write_jsonl, write_result  # noqa: E402

N_OLD = 40


def _split(ds: Path, per_intent: int, test_per_intent: int) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    intents = [x.strip() for x in (ds / "labels.txt").read_text().splitlines() if x.strip()]
    rows: dict[str, list[dict[str, Any]]] = {}
    for part, n, seed in (("train", per_intent, 0), ("test", test_per_intent, 1)):
        data = read_jsonl(ds / f"{part}.jsonl")
        random.Random(seed).shuffle(data)
        taken: dict[str, int] = {}
        rows[part] = []
        for r in data:
            if taken.get(r["label"], 0) < n:
                taken[r["label"]] = taken.get(r["label"], 0) + 1
                rows[part].append({"text": r["text"], "label": r["label"]})
    return intents, rows


def _accuracy(run_dir: Path, test: list[dict[str, Any]], old: set[str]) -> dict[str, float]:
    from tuneforge.inference import load_predictor

    pred = load_predictor(run_dir)
    got = [p["label"] for p in pred.predict([r["text"] for r in test], batch_size=64)]

    def acc(keep: Any) -> float:
        pairs = [(g, r["label"]) for g, r in zip(got, test, strict=True) if keep(r["label"])]
        return round(sum(g == y for g, y in pairs) / max(1, len(pairs)), 4)

    return {"old_accuracy": acc(lambda y: y in old), "new_accuracy": acc(lambda y: y not in old),
            "all_accuracy": acc(lambda y: True), "labels": len(pred.labels)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-intent", type=int, default=30)
    ap.add_argument("--test-per-intent", type=int, default=20)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--ewc", default=None, help="also: 10%% replay plus EWC with each of these lambdas (1,10,100)")
    ap.add_argument("--only-ewc", action="store_true", help="version 1 and the EWC runs only (a sweep of lambda)")
    ap.add_argument("--replays", default="0.3,0.1,0", help="the replay fractions re-trained with")
    ap.add_argument("--skip-joint", action="store_true", help="leave out the run on all intents at once")
    ap.add_argument("--name", default="forgetting")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from rich.console import Console

    from tuneforge.store.registry import local_registry
    from tuneforge.training import make_config, train
    from tuneforge.training.continual import RetrainOptions, retrain

    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    intents, rows = _split(shared_datasets() / "banking77", args.per_intent, args.test_per_intent)
    old = set(intents[:N_OLD])
    work = args.work or Path(tempfile.mkdtemp(prefix="tf-forgetting-"))
    work.mkdir(parents=True, exist_ok=True)
    old_train = write_jsonl(work / "old.jsonl", [r for r in rows["train"] if r["label"] in old])
    new_train = write_jsonl(work / "new.jsonl", [r for r in rows["train"] if r["label"] not in old])
    all_train = write_jsonl(work / "all.jsonl", rows["train"])
    test = rows["test"]
    base = {"task": "classification", "base_model": "minilm", "epochs": args.epochs, "seed": 42}
    results: list[dict[str, Any]] = []
    payload: dict[str, Any] = {
        "command": "python bench/forgetting.py " + " ".join(sys.argv[1:]),
        "setup": {"dataset": "banking77", "old_intents": N_OLD, "new_intents": len(intents) - N_OLD,
                  "per_intent": args.per_intent, "test_per_intent": args.test_per_intent, "epochs": args.epochs,
                  "base_model": "minilm", "replay_definition": "fraction of the new data's size, stratified"},
        "load_before": os.getloadavg(), "machine": machine(), "results": results}

    def record(row: dict[str, Any]) -> None:
        results.append(row)
        payload["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        write_result(args.name, payload)
        print(json.dumps(row), flush=True)

    t0 = time.time()
    train(make_config({**base, "data": str(old_train), "output": str(work / "v1")}), console=quiet)
    reg = local_registry(work / "registry")
    v1 = reg.register("banking", work / "v1", actor="bench")
    reg.set_alias("banking", "production", v1.version, actor="bench")
    record({"model": "v1: old intents only", **_accuracy(v1.run_dir, test, old), "seconds": round(time.time() - t0)})

    replays = [] if args.only_ewc else [float(x) for x in args.replays.split(",") if x.strip()]
    variants: list[tuple[str, float, float | None]] = [
        (f"retrain, {r:.0%} replay" if r else "retrain, no replay", r, None) for r in replays]
    for lam in (float(x) for x in (args.ewc or "").split(",") if x.strip()):
        variants.append((f"retrain, 10% replay + EWC {lam:g}", 0.1, lam))
    for label, replay, ewc in variants:
        t0 = time.time()
        r = retrain(reg, "banking", RetrainOptions(new_data=new_train, replay=replay, source=1, ewc=ewc,
                                                   epochs=args.epochs), actor="bench", console=quiet)
        record({"model": label, **_accuracy(r.version.run_dir, test, old), "replayed": r.mix["replayed_examples"],
                "seconds": round(time.time() - t0), **({"ewc": r.ewc} if r.ewc else {})})

    if args.only_ewc or args.skip_joint:
        print_table(results, ["model", "old_accuracy", "new_accuracy", "all_accuracy", "labels", "seconds"])
        return
    t0 = time.time()
    train(make_config({**base, "data": str(all_train), "output": str(work / "joint")}), console=quiet)
    record({"model": "all 77 intents at once", **_accuracy(work / "joint", test, old),
            "seconds": round(time.time() - t0)})
    print_table(results, ["model", "old_accuracy", "new_accuracy", "all_accuracy", "labels", "seconds"])
    print(f"wrote bench/results/{args.name}.json; runs in {work}")


if __name__ == "__main__":
    main()
