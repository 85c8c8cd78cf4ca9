"""Fine-tune and evaluate through the CLI on the shared public datasets; one row per benchmark.

    python bench/tasks.py                 # every benchmark (several hours on 2 cores; SQuAD alone ~50 min)
    python bench/tasks.py sst2 conll2003  # some of them
    python bench/tasks.py --work runs/bench weibo_ner   # keep the run folders (default: a temporary folder)

Each run trains with `tuneforge train` and scores the test split with `tuneforge evaluate`, then writes
bench/results/task-<name>.json with the metrics, wall times and training throughput.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, shared_datasets, tuneforge, write_result  # noqa: E402


def head(src: Path, n: int, dest: Path) -> Path:
    with src.open() as f, dest.open("w") as g:
        for i, line in enumerate(f):
            if i >= n:
                break
            g.write(line)
    return dest


# name -> (task, train, dev, test, metric, extra train args, how the data was prepared)
def benchmarks(ds: Path, work: Path) -> dict[str, dict[str, Any]]:
    def held_out(src: Path, share: str, name: str) -> tuple[Path, Path]:
        """Cut a stratified, seeded dev set from the training file, so that the split scored for the table
        never picks the checkpoint."""
        out = work / name
        tuneforge("data", "split", str(src), "--dev", share, "--test", "0", "--seed", "42", "-o", str(out),
                  log=work / f"{name}-split.log")
        return out / f"{src.stem}.train.jsonl", out / f"{src.stem}.dev.jsonl"

    return {
        "sst2": dict(task="classification", train=lambda: held_out(ds / "sst2/train.jsonl", "0.05", "sst2"),
                     test=ds / "sst2/validation.jsonl", metric="accuracy",
                     args=["--base-model", "minilm", "--epochs", "3", "--lr", "5e-5", "--adversarial", "fgm"],
                     note="19,000 of the 20,000 training sentences (a stratified 5% is the dev set that picks the "
                          "checkpoint); scored on the 872 validation sentences"),
        "sst2-400": dict(task="classification", train=lambda: head(ds / "sst2/train.jsonl", 400, work / "s400.jsonl"),
                         dev=head(ds / "sst2/validation.jsonl", 200, work / "sst2-dev200.jsonl"),
                         test=ds / "sst2/validation.jsonl", metric="accuracy",
                         args=["--base-model", "minilm", "--epochs", "3"],
                         note="first 400 training sentences, only --epochs 3 given; dev = first 200 validation"),
        "banking77": dict(task="classification",
                          train=lambda: held_out(ds / "banking77/train.jsonl", "0.1", "banking77"),
                          test=ds / "banking77/test.jsonl", metric="accuracy",
                          args=["--base-model", "minilm", "--epochs", "10"],
                          note="dev = a stratified 10% of train (tuneforge data split --seed 42)"),
        "conll2003": dict(task="ner", train=lambda: ds / "conll2003/train.jsonl",
                          dev=ds / "conll2003/validation.jsonl", test=ds / "conll2003/test.jsonl", metric="f1",
                          args=["--base-model", "minilm", "--epochs", "4"], note=""),
        "squad": dict(task="qa", train=lambda: ds / "squad_v1.1/train_by_article.jsonl", dev=None,
                      test=ds / "squad_v1.1/test_by_article.jsonl", metric="f1",
                      args=["--base-model", "minilm", "--epochs", "2"],
                      note="train_by_article (8,527 questions) → test_by_article (2,043)"),
        "chnsenticorp": dict(task="classification", train=lambda: ds / "chnsenticorp/train.jsonl",
                             dev=ds / "chnsenticorp/validation.jsonl", test=ds / "chnsenticorp/test.jsonl",
                             metric="accuracy", args=["--base-model", "e5-multilingual", "--epochs", "2",
                                                      "--max-length", "128"],
                             note="reviews cut at 128 tokens (median 54, 75th percentile 107)"),
        "weibo_ner": dict(task="ner", train=lambda: ds / "weibo_ner/train.jsonl", dev=ds / "weibo_ner/validation.jsonl",
                          test=ds / "weibo_ner/test.jsonl", metric="f1",
                          args=["--base-model", "e5-multilingual", "--epochs", "12", "--train-embeddings",
                                "--lenient-bio", "--adversarial", "fgm"],
                          note="10 stray I- tags in train read as entity starts (--lenient-bio)"),
    }


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    ap.add_argument("--work", type=Path, default=None, help="keep the run folders here")
    a = ap.parse_args(argv)
    names = a.names
    ds = shared_datasets()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tf-bench-") as tmp:
        work = a.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        all_b = benchmarks(ds, work)
        for name in names or list(all_b):
            b = all_b[name]
            got = b["train"]()  # a training file, or (train, dev) cut from one
            train, dev = got if isinstance(got, tuple) else (got, b.get("dev"))
            out = work / f"run-{name}"
            args = ["train", "--task", b["task"], "--data", str(train), "--output", str(out), *b["args"]]
            if dev is not None:
                args += ["--eval-data", str(dev)]
            ev_extra = ["--lenient-bio"] if "--lenient-bio" in b["args"] else []
            train_wall = tuneforge(*args, log=work / f"{name}-train.log")
            eval_wall = tuneforge("evaluate", str(out), "--data", str(b["test"]), "--name", "test", *ev_extra,
                                  log=work / f"{name}-eval.log")
            man = json.loads((out / "tuneforge.json").read_text())
            metrics = json.loads((out / "eval-test" / "metrics.json").read_text())
            row = {"benchmark": name, "task": b["task"], "base_model": man["base_model"]["name"],
                   "metric": b["metric"], "value": metrics[b["metric"]],
                   "train_examples": man["data"]["train"]["examples"], "epochs_run": man["training"]["epochs"],
                   "train_s": man["training"]["train_seconds"], "train_cmd_s": round(train_wall, 1),
                   "eval_cmd_s": round(eval_wall, 1),
                   "examples_per_s": man["training"]["train_examples_per_second"],
                   "resolved": man["resolved"], "command": "tuneforge " + " ".join(a if "/" not in a else Path(a).name
                                                                                for a in args),
                   "note": b["note"], "metrics": {k: v for k, v in metrics.items() if not isinstance(v, dict)}}
            rows.append(row)
            write_result(f"task-{name}", {"machine": machine(), **row})
            print_table([row], ["benchmark", "metric", "value", "train_examples", "epochs_run", "train_s",
                                "train_cmd_s", "examples_per_s"])
    print_table(rows, ["benchmark", "task", "base_model", "metric", "value", "train_examples", "epochs_run",
                       "train_s", "train_cmd_s", "eval_cmd_s", "examples_per_s"])


if __name__ == "__main__":
    main(sys.argv[1:])
