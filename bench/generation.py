"""Generative fine-tuning of SmolLM2-135M-Instruct (issue 18): quality and speed, every row a `tuneforge` command.

Parts (``--parts``, any of):

* ``squad``: SQuAD v1.1 as chat (context + question -> the first reference answer; ``train_by_article`` for
  training, the first ``--test-n`` of ``test_by_article`` for testing). Token F1 / EM / ROUGE-L of the zero-shot
  base against LoRA SFT with each ``--train-n`` (default 200; the issue's 2,000 takes hours here).
* ``alpaca``: chat SFT on ../shared/datasets/alpaca: validation loss of the base and of the tuned model on held-out
  conversations.
* ``dpo``: DPO from smollm2 on ../shared/datasets/hh_harmless pairs: preference accuracy on held-out pairs before
  and after.
* ``speed``: trained tokens/s of ``tuneforge train --task generation`` (LoRA) against TRL's ``SFTTrainer`` with
  LoRA on the same data, batch size, max length and precision, in one run; validation loss of both (the same
  definition: TRL's completion tokens are our learned span); peak memory (max RSS) of LoRA and full fine-tuning.
  Needs ``trl`` importable (``pip install --no-deps trl==1.16.0``, or ``--trl-path`` a folder holding it).

    python bench/generation.py --parts squad --train-n 200 --test-n 500
    python bench/generation.py --parts speed
    python bench/generation.py --parts alpaca dpo

Writes bench/results/generation.json (parts already there are kept unless rerun).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, print_table, shared_datasets, tuneforge, write_jsonl, write_result  # noqa: E402

PROMPT = "Context: {context}\nQuestion: {question}\nAnswer with a short phrase from the context."


def _lines(path: Path, start: int = 0, count: int | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return rows[start: None if count is None else start + count]


def squad_chat(src: Path, start: int, count: int, out: Path) -> Path:
    rows = _lines(src, start, count)
    return write_jsonl(out, [{"messages": [{"role": "user", "content": PROMPT.format(**r)},
                                      {"role": "assistant", "content": r["answers"]["text"][0]}]} for r in rows])


def _metrics(folder: Path) -> dict[str, Any]:
    return json.loads(next(folder.rglob("metrics.json")).read_text())


def _evaluate(model: str, data: Path, out: Path, log: Path) -> tuple[dict[str, Any], float]:
    args = ["evaluate", model, "--data", str(data), "--output", str(out)]
    if not Path(model).is_dir():
        args += ["--task", "generation"]
    s = tuneforge(*args, log=log)
    return _metrics(out), s


def part_squad(work: Path, train_ns: list[int], test_n: int,
               save: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """The zero-shot row, then one row per training size; ``save(rows)`` after each (a long run keeps what it
    measured if it is stopped)."""
    sq = shared_datasets() / "squad_v1.1"
    test = squad_chat(sq / "test_by_article.jsonl", 0, test_n, work / "squad-test.jsonl")
    rows: list[dict[str, Any]] = []
    base, s = _evaluate("smollm2", test, work / "squad-base", work / "squad-base.log")
    rows.append({"part": "squad", "model": "smollm2 zero-shot", "train_examples": 0, "test": test_n,
                 "f1": base["f1"], "exact_match": base["exact_match"], "rougeL": base["rougeL"],
                 "eval_s": round(s, 1), "command": "tuneforge evaluate smollm2 --task generation --data TEST"})
    save(rows)
    for n in train_ns:
        train = squad_chat(sq / "train_by_article.jsonl", 0, n, work / f"squad-train-{n}.jsonl")
        run = work / f"squad-lora-{n}"
        cmd = ["train", "--task", "generation", "--data", str(train), "--base-model", "smollm2", "--epochs", "1",
               "--max-length", "512", "--output", str(run), "--overwrite"]
        train_s = tuneforge(*cmd, log=work / f"squad-train-{n}.log")
        tuned, s = _evaluate(str(run), test, work / f"squad-eval-{n}", work / f"squad-eval-{n}.log")
        rows.append({"part": "squad", "model": "smollm2 + LoRA SFT", "train_examples": n, "test": test_n,
                     "f1": tuned["f1"], "exact_match": tuned["exact_match"], "rougeL": tuned["rougeL"],
                     "valid_loss": tuned.get("valid_loss"), "train_s": round(train_s, 1), "eval_s": round(s, 1),
                     "f1_gain": round(tuned["f1"] - base["f1"], 2),
                     "command": "tuneforge " + " ".join(cmd[:-3]).replace(str(train), "TRAIN")})
        save(rows)
    return rows


def part_alpaca(work: Path, n_train: int, n_test: int) -> list[dict[str, Any]]:
    d = shared_datasets() / "alpaca"
    train = write_jsonl(work / "alpaca-train.jsonl", _lines(d / "train.jsonl", 0, n_train))
    test = write_jsonl(work / "alpaca-test.jsonl", _lines(d / "test.jsonl", 0, n_test))
    base, _ = _evaluate("smollm2", test, work / "alpaca-base", work / "alpaca-base.log")
    run = work / "alpaca-lora"
    cmd = ["train", "--task", "generation", "--data", str(train), "--base-model", "smollm2", "--epochs", "1",
           "--max-length", "512", "--output", str(run), "--overwrite"]
    train_s = tuneforge(*cmd, log=work / "alpaca-train.log")
    tuned, _ = _evaluate(str(run), test, work / "alpaca-eval", work / "alpaca-eval.log")
    return [{"part": "alpaca", "train_examples": n_train, "test": n_test, "valid_loss_base": base["valid_loss"],
             "valid_loss_tuned": tuned["valid_loss"], "rougeL_base": base["rougeL"], "rougeL_tuned": tuned["rougeL"],
             "train_s": round(train_s, 1), "command": "tuneforge " + " ".join(cmd[:-3]).replace(str(train), "TRAIN")}]


def part_dpo(work: Path, n_train: int, n_test: int, max_length: int) -> list[dict[str, Any]]:
    d = shared_datasets() / "hh_harmless"
    train = write_jsonl(work / "hh-train.jsonl", _lines(d / "train.jsonl", 0, n_train))
    test = write_jsonl(work / "hh-test.jsonl", _lines(d / "test.jsonl", 0, n_test))
    base, _ = _evaluate("smollm2", test, work / "hh-base", work / "hh-base.log")
    run = work / "hh-dpo"
    cmd = ["train", "--task", "generation", "--method", "dpo", "--data", str(train), "--base-model", "smollm2",
           "--epochs", "1", "--max-length", str(max_length), "--output", str(run), "--overwrite"]
    train_s = tuneforge(*cmd, log=work / "hh-train.log")
    tuned, _ = _evaluate(str(run), test, work / "hh-eval", work / "hh-eval.log")
    return [{"part": "dpo", "train_pairs": n_train, "test_pairs": n_test,
             "preference_accuracy_base": base["preference_accuracy"],
             "preference_accuracy_dpo": tuned["preference_accuracy"], "train_s": round(train_s, 1),
             "command": "tuneforge " + " ".join(cmd[:-3]).replace(str(train), "TRAIN")}]


_PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[2:]); "
         "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
         "sys.exit(r.returncode)")


def _run_measured(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of one command, run under its own parent process so that the
    peak is that command's alone."""
    peak = log.with_suffix(".peak")
    t0 = time.perf_counter()
    with log.open("w") as f:
        r = subprocess.run([sys.executable, "-c", _PEAK, str(peak), *cmd], stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed; see {log}")
    return wall, int(peak.read_text()) / 1024


def part_speed(work: Path, trl_path: str | None, n_train: int) -> list[dict[str, Any]]:
    from tuneforge.models.registry import resolve_base_model
    from tuneforge.settings import Settings
    from tuneforge.training.hardware import bf16_supported

    sq = shared_datasets() / "squad_v1.1"
    train = squad_chat(sq / "train_by_article.jsonl", 0, n_train, work / "speed-train.jsonl")
    dev = squad_chat(sq / "train_by_article.jsonl", n_train, 24, work / "speed-dev.jsonl")
    base = resolve_base_model("smollm2", Settings().cache_dir).path
    env = {"BF16": "1" if bf16_supported() else "0"}
    if trl_path:
        env["PYTHONPATH"] = trl_path
    trl_script = Path(__file__).resolve().parent / "trl_sft_baseline.py"
    wall, rss = _run_measured([sys.executable, str(trl_script), str(base), str(train), str(dev), str(work / "trl")],
                              work / "trl.log", env)
    trl = json.loads((work / "trl.log").read_text().strip().splitlines()[-1])
    trl["wall_s"], trl["peak_rss_mib"] = round(wall, 1), round(rss)
    exe = str(Path(sys.executable).parent / "tuneforge")
    rows = []
    for method in ("lora", "full"):
        run = work / f"speed-{method}"
        cmd = [exe, "train", "--task", "generation", "--data", str(train), "--base-model", "smollm2", "--method",
               method, "--epochs", "1", "--batch-size", "8", "--max-length", "512", "--output", str(run),
               "--overwrite"]
        wall, rss = _run_measured(cmd, work / f"speed-{method}.log")
        manifest = json.loads((run / "tuneforge.json").read_text())
        train_s = float(manifest["training"]["train_seconds"])
        ev, _ = _evaluate(str(run), dev, work / f"speed-{method}-eval", work / f"speed-{method}-eval.log")
        rows.append({"part": "speed", "trainer": f"tuneforge {method}", "train_s": round(train_s, 1),
                     "command_s": round(wall, 1), "tokens_per_s": round(trl["tokens"] / train_s, 1),
                     "valid_loss": round(ev["valid_loss"], 4), "peak_rss_mib": round(rss)})
    rows.insert(0, {"part": "speed", "trainer": "TRL SFTTrainer lora", "train_s": trl["train_s"],
                    "command_s": trl["wall_s"], "tokens_per_s": trl["tokens_per_s"],
                    "valid_loss": trl["eval_loss"], "peak_rss_mib": trl.get("peak_rss_mib")})
    lora = rows[1]
    lora["ratio_train_vs_trl"] = round(trl["train_s"] / lora["train_s"], 2)
    lora["ratio_command_vs_trl_train"] = round(trl["train_s"] / lora["command_s"], 2)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["squad"], choices=["squad", "alpaca", "dpo", "speed"])
    ap.add_argument("--train-n", type=int, nargs="+", default=[200])
    ap.add_argument("--test-n", type=int, default=500)
    ap.add_argument("--alpaca-train", type=int, default=400)
    ap.add_argument("--alpaca-test", type=int, default=100)
    ap.add_argument("--dpo-train", type=int, default=256)
    ap.add_argument("--dpo-test", type=int, default=200)
    ap.add_argument("--dpo-max-length", type=int, default=384)
    ap.add_argument("--speed-n", type=int, default=96)
    ap.add_argument("--trl-path", default=None)
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench-generation-"))
    work.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "generation.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for part in a.parts:
        t0 = time.perf_counter()

        def save(rows: list[dict[str, Any]], part: str = part, t0: float = t0) -> None:
            results[part] = {"rows": rows, "machine": machine(), "wall_s": round(time.perf_counter() - t0, 1),
                             "measured_at": time.strftime("%Y-%m-%d %H:%M")}
            write_result("generation", results)

        if part == "squad":
            rows = part_squad(work, a.train_n, a.test_n, save)
        elif part == "alpaca":
            rows = part_alpaca(work, a.alpaca_train, a.alpaca_test)
        elif part == "dpo":
            rows = part_dpo(work, a.dpo_train, a.dpo_test, a.dpo_max_length)
        else:
            rows = part_speed(work, a.trl_path, a.speed_n)
        save(rows)
        cols = sorted({k for r in rows for k in r if k != "command"}, key=lambda k: (k != "model", k))
        print_table(rows, cols)
    print(f"Wrote {path} (work folder {work})")


if __name__ == "__main__":
    main()
