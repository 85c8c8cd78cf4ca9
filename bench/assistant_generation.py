"""The assistant's answers on Bitext customer support: retrieval-only against generated answers (issue 19), every
step a `tuneforge` command.

Data (../shared/datasets/bitext_customer_support, intents from its *_meta.jsonl files):

* knowledge base: the train conversations not used for the writer, as QA passages (question = the customer's
  request, answer = the agent's reply, intent);
* writer training questions: ``--train-n`` train conversations drawn at random (seed 42), kept out of the
  knowledge base, so the writer learns to answer questions whose exact passage does not exist;
* evaluation: ``--test-n`` test conversations (every k-th row of test.jsonl, which is ordered by intent: all 27
  intents) with their reference replies, plus ``--ood-n`` out-of-domain requests (the first user messages of
  ../shared/datasets/alpaca/test.jsonl) that the knowledge base cannot answer.

Steps: ``solution assistant build`` (minilm retrieval, no intent model); the passage similarity floor is the 2%
quantile of the writer questions' best similarity (questions not in the knowledge base, like new customers');
``solution assistant writer-data`` (numbered passages + question -> the reference reply citing the passages of
the question's intent); ``tuneforge train --task generation`` (LoRA SFT of smollm2, 1 epoch); ``set-writer``;
``solution assistant evaluate --answers`` with the fine-tuned writer and, for comparison, the base smollm2.

    python bench/assistant_generation.py                     # ~0.5-1 h on 2 busy cores, most of it generating
    python bench/assistant_generation.py --writer-run DIR    # reuse a trained writer

Writes bench/results/assistant_generation.json and prints the table.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, read_jsonl, shared_datasets, tuneforge, write_jsonl, write_result  # noqa: E402


def _qa(conv: dict[str, Any], meta: dict[str, Any], prefix: str) -> dict[str, Any]:
    user, reply = conv["messages"][0]["content"], conv["messages"][-1]["content"]
    return {"id": f"{prefix}:{meta['source_row']}", "question": user, "answer": reply, "intent": meta["intent"]}


def prepare(work: Path, train_n: int, test_n: int, ood_n: int, seed: int) -> dict[str, Any]:
    d = shared_datasets()
    bitext = d / "bitext_customer_support"
    train = [
        _qa(c, m, "bitext")
        for c, m in zip(read_jsonl(bitext / "train.jsonl"), read_jsonl(bitext / "train_meta.jsonl"), strict=True)
    ]
    test = [
        _qa(c, m, "test")
        for c, m in zip(read_jsonl(bitext / "test.jsonl"), read_jsonl(bitext / "test_meta.jsonl"), strict=True)
    ]
    rng = random.Random(seed)
    writer_idx = set(rng.sample(range(len(train)), train_n))
    kb = [r for i, r in enumerate(train) if i not in writer_idx]
    writer_rows = [r for i, r in enumerate(train) if i in writer_idx]
    step = max(1, len(test) // test_n)
    evaluation = [{k: r[k] for k in ("question", "answer", "intent")} for r in test[::step][:test_n]]
    ood = [
        {"question": c["messages"][0]["content"], "answer": None}
        for c in read_jsonl(d / "alpaca" / "test.jsonl")[:ood_n]
    ]
    write_jsonl(work / "kb.jsonl", kb)
    write_jsonl(work / "writer-questions.jsonl", writer_rows)
    write_jsonl(work / "test.jsonl", evaluation + ood)
    return {
        "knowledge_base": len(kb),
        "writer_questions": len(writer_rows),
        "test_questions": len(evaluation),
        "out_of_domain": len(ood),
        "intents": len({r["intent"] for r in evaluation}),
    }


def set_floor(bundle: Path, questions: Path, quantile: float) -> float:
    """The passage similarity floor: the ``quantile`` of the best knowledge-base similarity of questions that are
    not in the knowledge base, written into the bundle's config."""
    import numpy as np

    from tuneforge.solutions.assistant.assistant import BUNDLE_FILE, Assistant, AssistantConfig
    from tuneforge.utils.fs import atomic_write_json

    a = Assistant.load(bundle)
    qs = [r["question"] for r in read_jsonl(questions)]
    best = [h[0][1] for h in a.search_knowledge(a.embed(qs), 1, floor=-1.0)]
    floor = round(float(np.quantile(best, quantile)), 4)
    info = json.loads((bundle / BUNDLE_FILE).read_text(encoding="utf-8"))
    info["config"] = AssistantConfig.parse({**info["config"], "passage_min_similarity": floor}).model_dump(mode="json")
    atomic_write_json(bundle / BUNDLE_FILE, info)
    return floor


COLUMNS = [
    ("token_f1", "token F1"),
    ("rougeL", "ROUGE-L"),
    ("citation_accuracy", "citation accuracy"),
    ("answer_passage_shown", "answer's passage retrieved"),
    ("cited", "cites a passage"),
    ("said_nothing_relevant", "said nothing relevant (answerable)"),
    ("unanswerable_said_nothing_relevant", "said nothing relevant (out of domain)"),
    ("mean_words", "words per answer"),
    ("seconds_per_question", "s / question"),
]


def table(modes: dict[str, dict[str, Any]], names: dict[str, str]) -> str:
    head = "| answers | " + " | ".join(label for _, label in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for key, m in modes.items():
        cells = [
            ("—" if m.get(k) is None else f"{m[k]:.3f}" if isinstance(m[k], float) and k != "mean_words" else str(m[k]))
            for k, _ in COLUMNS
        ]
        lines.append(f"| {names.get(key, key)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-n", type=int, default=200, help="writer training questions")
    ap.add_argument("--test-n", type=int, default=100, help="held-out test questions")
    ap.add_argument("--ood-n", type=int, default=20, help="out-of-domain questions (no answer exists)")
    ap.add_argument("--max-length", type=int, default=640, help="writer training max length (tokens)")
    ap.add_argument("--passage-chars", type=int, default=300, help="passage length in the writer's prompt")
    ap.add_argument("--floor-quantile", type=float, default=0.02)
    ap.add_argument("--writer-run", type=Path, help="reuse this writer run instead of training one")
    ap.add_argument("--no-base", action="store_true", help="skip the base smollm2 writer")
    ap.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="assistant-generation-"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    data = prepare(work, args.train_n, args.test_n, args.ood_n, args.seed)
    print(f"data: {data} (work folder {work})")
    bundle = work / "bundle"
    times: dict[str, float] = {}
    # 3 passages of 300 characters: a training example (prompt and reply) stays under 640 tokens
    (work / "assistant-config.json").write_text(
        json.dumps({"writer_passages": 3, "writer_passage_chars": args.passage_chars})
    )
    times["build"] = tuneforge(
        "solution",
        "assistant",
        "build",
        "--kb",
        str(work / "kb.jsonl"),
        "--output",
        str(bundle),
        "--encoder",
        "minilm",
        "--threshold",
        "0",
        "--config",
        str(work / "assistant-config.json"),
        "--overwrite",
        log=work / "build.log",
    )
    floor = set_floor(bundle, work / "writer-questions.jsonl", args.floor_quantile)
    print(f"built the bundle in {times['build']:.0f} s; passage similarity floor {floor}")
    commands = {}
    if args.writer_run is None:
        commands["writer_data"] = (
            f"tuneforge solution assistant writer-data BUNDLE --data writer-questions.jsonl "
            f"-o writer.jsonl --limit {args.train_n}"
        )
        times["writer_data"] = tuneforge(
            "solution",
            "assistant",
            "writer-data",
            str(bundle),
            "--data",
            str(work / "writer-questions.jsonl"),
            "-o",
            str(work / "writer.jsonl"),
            "--limit",
            str(args.train_n),
            log=work / "writer-data.log",
        )
        print((work / "writer-data.log").read_text().strip())
        run = work / "writer-run"
        cmd = [
            "train",
            "--task",
            "generation",
            "--data",
            str(work / "writer.jsonl"),
            "--base-model",
            "smollm2",
            "--epochs",
            "1",
            "--max-length",
            str(args.max_length),
            "--output",
            str(run),
        ]
        commands["train"] = " ".join(["tuneforge", *cmd]).replace(str(work) + "/", "")
        times["train_writer"] = tuneforge(*cmd, log=work / "train.log")
        print(f"trained the writer in {times['train_writer']:.0f} s")
    else:
        run = args.writer_run
    tuneforge("solution", "assistant", "set-writer", str(bundle), str(run), log=work / "set-writer.log")
    extra = [] if args.no_base else ["--writer", "smollm2"]
    times["evaluate"] = tuneforge(
        "solution",
        "assistant",
        "evaluate",
        str(bundle),
        "--answers",
        str(work / "test.jsonl"),
        *extra,
        "-o",
        str(work / "eval.json"),
        log=work / "evaluate.log",
    )
    result = json.loads((work / "eval.json").read_text())["answers"]
    names = {
        "retrieval": "retrieval only (best passage's answer)",
        "generate": "generated, fine-tuned smollm2 writer (LoRA, 1 epoch)",
        "generate:smollm2": "generated, base smollm2 writer (zero-shot)",
    }
    manifest = json.loads((Path(run) / "tuneforge.json").read_text())
    times["total"] = time.perf_counter() - t_all
    md = table(result["modes"], names)
    print(md)
    print({k: round(v, 1) for k, v in times.items()})
    path = write_result(
        "assistant_generation",
        {
            "data": data,
            "passage_min_similarity": floor,
            "times_s": times,
            "commands": commands,
            "writer": {
                "run": str(run),
                "train_metrics": manifest.get("metrics", {}).get("train"),
                "config": {
                    k: manifest.get("config", {}).get(k)
                    for k in ("epochs", "max_length", "batch_size", "learning_rate", "method")
                },
            },
            "modes": result["modes"],
            "samples": result.get("samples"),
            "table": md,
            "machine": machine(),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
