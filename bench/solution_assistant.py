"""Benchmark of the customer-service assistant (issue #6) on BANKING77.

1. Hold out 10 of the 77 intents entirely (seeded choice): they play the out-of-scope messages.
2. Build an assistant through the solution's own build path: fine-tune minilm on the remaining intents' training
   messages (90%; 10% calibrate the handover threshold at a target precision), a knowledge base of one short
   answer passage per in-scope intent written from the intent's name, and the training messages as past tickets.
3. On test: intent accuracy (in-scope messages), retrieval hit-rate@1/@5 (a retrieved passage of the message's
   intent) over the KB alone and over KB + tickets, with the base encoder and with the fine-tuned intent model's
   encoder; handover precision/recall on the in-scope test messages mixed with the held-out intents' test
   messages, at the calibrated threshold and a few others.
4. Exact-search latency of the vector index at 100k passages × 384 dimensions (float16).

    python bench/solution_assistant.py                  # epochs 2, ~10 min on 2 CPU cores
    python bench/solution_assistant.py --epochs 1 --limit 3000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, shared_datasets, write_result  # noqa: E402


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def intent_passage(intent: str) -> dict[str, str]:
    """A generic answer written from the intent's name only (no test text is used)."""
    words = intent.replace("_", " ")
    title = words[:1].upper() + words[1:]
    return {"question": f"{title}?", "intent": intent,
            "answer": f"{title}: here is what to know about {words}. Open the app, go to Help, choose "
                      f"'{title}' and follow the steps; our team will contact you if anything else is needed."}


def retrieval_scores(embedder: Any, passages: list[Any], queries: list[str], k: int = 5
                     ) -> tuple[list[list[str | None]], np.ndarray, float]:
    """Intents of the top-k passages per query, the top-1 similarity per query, and ms per query."""
    from tuneforge.solutions.assistant.index import VectorIndex

    index = VectorIndex(embedder.embed([p.text for p in passages]), [p.id for p in passages])
    t0 = time.perf_counter()
    scores, idx = index.search(embedder.embed(queries), k)
    dt = time.perf_counter() - t0
    return [[passages[int(r)].intent for r in row] for row in idx], scores[:, 0], 1000 * dt / max(1, len(queries))


def hit_rates(intents: list[list[str | None]], labels: list[str], k: int = 5) -> dict[str, float]:
    n = len(labels)
    return {"hit@1": sum(i[0] == lab for i, lab in zip(intents, labels, strict=True)) / n,
            f"hit@{k}": sum(lab in i for i, lab in zip(intents, labels, strict=True)) / n}


def handover_at_rate(score_in: np.ndarray, score_out: np.ndarray, in_rate: float) -> dict[str, float]:
    """Hand over messages whose score is below the threshold that hands over ``in_rate`` of in-scope messages;
    precision and recall of those handovers for out-of-scope messages, and the score's AUROC."""
    from sklearn.metrics import roc_auc_score

    t = float(np.quantile(score_in, in_rate))
    tp, fp = int((score_out < t).sum()), int((score_in < t).sum())
    y = np.r_[np.zeros(len(score_in)), np.ones(len(score_out))]
    return {"auroc": float(roc_auc_score(y, -np.r_[score_in, score_out])),
            "precision": tp / max(1, tp + fp), "recall": tp / max(1, len(score_out))}


def index_latency(n: int = 100_000, dim: int = 384, queries: int = 200) -> dict[str, float]:
    from tuneforge.solutions.assistant.index import VectorIndex

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    index = VectorIndex(rng.standard_normal((n, dim), dtype=np.float32), [str(i) for i in range(n)])
    build_s = time.perf_counter() - t0
    q = rng.standard_normal((queries, dim), dtype=np.float32)
    index.search(q[:1], 5)  # warm up
    t0 = time.perf_counter()
    for i in range(queries):
        index.search(q[i: i + 1], 5)
    single = (time.perf_counter() - t0) / queries
    t0 = time.perf_counter()
    index.search(q[:64], 5)
    batch = (time.perf_counter() - t0) / 64
    # exactness: the top hit of each query equals a brute-force float32 argmax
    s, ix = index.search(q[:20], 1)
    brute = np.argmax(index.vectors.astype(np.float32) @ (q[:20] / np.linalg.norm(q[:20], axis=1, keepdims=True)).T,
                      axis=0)
    return {"passages": n, "dim": dim, "dtype": index.dtype, "memory_mb": round(index.vectors.nbytes / 2**20, 1),
            "build_s": round(build_s, 3), "ms_per_query": round(1000 * single, 3),
            "ms_per_query_batch64": round(1000 * batch, 3),
            "exact_top1": bool((ix[:, 0] == brute).all())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--limit", type=int, default=None, help="use N training rows (seeded sample)")
    ap.add_argument("--test-limit", type=int, default=None, help="score every Nth test message only (a quick run)")
    ap.add_argument("--heldout", type=int, default=10, help="intents held out as out-of-scope")
    ap.add_argument("--base-model", default="minilm")
    ap.add_argument("--encoder", default=None, help="retrieval encoder of the assistant: a base model (default: "
                                                   "--base-model) or 'intent' (the fine-tuned intent model's)")
    ap.add_argument("--target-precision", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="keep the bundle here (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="with --work: reuse the bundle built there before")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from rich.console import Console

    from tuneforge.inference.embeddings import Embedder
    from tuneforge.solutions.assistant.assistant import Assistant
    from tuneforge.solutions.assistant.build import BuildOptions, build_assistant
    from tuneforge.solutions.assistant.knowledge import passages_from_rows
    from tuneforge.solutions.assistant.scoring import score_predictions

    encoder = args.encoder or args.base_model
    data = shared_datasets() / "banking77"
    labels = [x.strip() for x in (data / "labels.txt").read_text().splitlines() if x.strip()]
    rng = random.Random(args.seed)
    heldout = sorted(rng.sample(labels, args.heldout))
    train = [r for r in read_jsonl(data / "train.jsonl") if r["label"] not in heldout]
    if args.limit:
        train = random.Random(args.seed).sample(train, min(args.limit, len(train)))
    test = read_jsonl(data / "test.jsonl")
    if args.test_limit:
        test = test[:: max(1, len(test) // args.test_limit)]
    in_test = [r for r in test if r["label"] not in heldout]
    out_test = [r for r in test if r["label"] in heldout]
    in_labels = sorted({r["label"] for r in train})

    work_ctx = tempfile.TemporaryDirectory(prefix="bench-assistant-")
    work = args.work or Path(work_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    tickets = write_jsonl(work / "tickets.jsonl", [{"text": r["text"], "label": r["label"]} for r in train])
    kb_rows = [intent_passage(i) for i in in_labels]
    kb = write_jsonl(work / "kb.jsonl", kb_rows)
    bundle = work / "bundle"

    t0 = time.perf_counter()
    if args.reuse and (bundle / "assistant.json").exists():
        summary = {**json.loads((bundle / "assistant.json").read_text())["build"], "reused": True}
        summary["threshold"] = json.loads((bundle / "assistant.json").read_text())["config"]["threshold"]
    else:
        summary = build_assistant(BuildOptions(
            output=bundle, knowledge=[kb], tickets=tickets, base_model=args.base_model, epochs=args.epochs,
            target_precision=args.target_precision, config={"encoder": encoder}, overwrite=True, seed=42),
            console=Console(stderr=True))
    build_s = time.perf_counter() - t0
    assistant = Assistant.load(bundle)

    # intent + handover on in-scope and held-out test messages
    rows = in_test + out_test
    texts = [r["text"] for r in rows]
    t0 = time.perf_counter()
    preds = [(p[0], p[1]) for p in assistant.classify(texts)]
    classify_ms = 1000 * (time.perf_counter() - t0) / len(texts)
    top_scores, idx = assistant.retrieve(texts, 5)
    top = top_scores[:, 0].tolist()
    retrieved = [[assistant.passages[int(r)].intent for r in row] for row in idx]
    gold = [r["label"] for r in rows]
    main_metrics = score_predictions(preds, gold, retrieved, known=assistant.labels, config=assistant.config,
                                     similarity=top)
    sweep = []
    cal = assistant.config
    for t, s in sorted({(round(cal.threshold, 3), round(cal.min_similarity, 3)), (round(cal.threshold, 3), 0.0),
                        (0.3, 0.0), (0.5, 0.0), (0.7, 0.0), (0.9, 0.0)}):
        cfg = cal.model_copy(update={"threshold": t, "min_similarity": s})
        m = score_predictions(preds, gold, None, known=assistant.labels, config=cfg, similarity=top)
        sweep.append({"threshold": t, "min_similarity": s,
                      **{k: m[k] for k in ("handover_rate", "handover_precision", "handover_recall",
                                           "in_scope_handover_rate", "answered_accuracy")}})

    # retrieval: KB only / KB + tickets, base encoder / fine-tuned intent encoder; the top-1 similarity to the
    # KB + tickets doubles as an out-of-scope score (nearest-neighbour distance), compared with the classifier's
    tuned = Embedder(bundle / "intent", max_length=128)
    kb_passages = passages_from_rows(kb_rows, "kb.jsonl")
    is_in = np.array([r["label"] in set(assistant.labels) for r in rows])
    in_labels_test = [g for g, i in zip(gold, is_in, strict=True) if i]
    msp = np.array([p[1] for p in preds])
    in_rate = float(main_metrics["in_scope_handover_rate"] or 0.05)
    ood = [{"score": "classifier probability (used)", **handover_at_rate(msp[is_in], msp[~is_in], in_rate)}]
    retrieval = []
    from tuneforge.solutions.assistant.assistant import encoder_resolver

    base = assistant.embedder if encoder == args.base_model else Embedder(encoder_resolver()(args.base_model),
                                                                          max_length=128)
    for enc_name, enc in ((f"base {args.base_model}", base), ("fine-tuned (intent model)", tuned)):
        for kb_name, ps in (("KB: 1 passage per intent", kb_passages), ("KB + past tickets", assistant.passages)):
            intents, top1, ms = retrieval_scores(enc, ps, texts)
            retrieval.append({"encoder": enc_name, "passages": kb_name, "n_passages": len(ps),
                              **hit_rates([x for x, i in zip(intents, is_in, strict=True) if i], in_labels_test),
                              "ms_per_query": ms})
            if kb_name.startswith("KB +"):
                ood.append({"score": f"nearest-ticket similarity, {enc_name}",
                            **handover_at_rate(top1[is_in], top1[~is_in], in_rate)})

    latency = index_latency()
    result = {
        "benchmark": "banking77", "solution": "assistant", "base_model": args.base_model, "encoder": encoder,
        "epochs": args.epochs,
        "heldout_intents": heldout, "train_messages": len(train), "in_scope_intents": len(in_labels),
        "test_in_scope": len(in_test), "test_out_of_scope": len(out_test),
        "build": summary, "build_s": round(build_s, 1), "classify_ms_per_message": round(classify_ms, 2),
        "metrics": main_metrics, "threshold_sweep": sweep, "retrieval": retrieval,
        "out_of_scope_scores": {"in_scope_handover_rate": in_rate, "rows": ood}, "index_latency": latency,
        "machine": machine(),
        "command": "python bench/solution_assistant.py " + " ".join(sys.argv[1:]),
    }
    path = write_result("solution_assistant" + ("" if encoder == args.base_model else f"-encoder-{encoder}"), result)

    print_table([{"metric": k, "value": v} for k, v in main_metrics.items()], ["metric", "value"])
    print_table(sweep, ["threshold", "min_similarity", "handover_rate", "handover_precision", "handover_recall",
                        "in_scope_handover_rate", "answered_accuracy"])
    print_table(retrieval, ["encoder", "passages", "n_passages", "hit@1", "hit@5", "ms_per_query"])
    print(f"out-of-scope detection at the same in-scope handover rate ({in_rate:.3f}):")
    print_table(ood, ["score", "auroc", "precision", "recall"])
    print_table([latency], list(latency))
    print(f"build {build_s:.0f} s (dev accuracy {summary.get('dev_accuracy')}, threshold "
          f"{summary['threshold']:.3f}, min similarity {cal.min_similarity:.3f}); written {path}")
    work_ctx.cleanup()


if __name__ == "__main__":
    main()
