"""Ray (issue 21): data-parallel fine-tuning with Ray Train against one process, a Ray Tune search against the
sequential Optuna search, and a Ray Train worker killed with SIGKILL mid-epoch.

1. Scaling: SST-2, the first ``--train-n`` (2,000) training sentences and the first ``--dev-n`` (400) validation
   sentences, minilm, 1 epoch, batch 16. ``tuneforge train`` in one process against ``--executor ray --workers 2``
   (8 examples per worker: the same 16 per step, so the same optimizer steps and learning-rate schedule).
   Reported: dev accuracy, wall and train time, speed-up, scaling efficiency (speed-up / workers), and the
   communication per step: the fp32 gradient of the trainable parameters that DDP all-reduces each step
   (trainable x 4 bytes; a ring all-reduce sends 2 (N-1)/N times that per worker), and the loopback bytes
   measured during the Ray run (``/proc/net/dev``, lo: it includes Ray's own traffic and anything else on the
   machine, so it is an upper bound).
2. Search: ``--trials`` (8) trials of bert-tiny on ``--search-n`` (300) sentences, 1 epoch each: ``tuneforge search``
   (Optuna, one trial after another) against ``--executor ray --parallel 2`` (Ray Tune, Optuna TPE + ASHA).
3. Faults: bert-tiny on the 2,000 sentences with 2 Ray workers, a checkpoint every 20 steps; once rank 0 has logged
   step 30, one RayTrainWorker process gets SIGKILL. The run must finish; its manifest says how many steps ran twice.

Ray runs on this machine (``ray.init`` by the CLI) unless RAY_ADDRESS is set.

    OMP_WAIT_POLICY=PASSIVE nice -n 5 python bench/ray_scaling.py          # ~25 min on 2 busy cores
    python bench/ray_scaling.py --only faults                               # one part

Writes bench/results/ray_scaling.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, read_jsonl, shared_datasets, tuneforge, write_jsonl, write_result  # noqa: E402


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _lo_bytes() -> int | None:
    """Bytes sent on the loopback interface so far (None where /proc/net/dev is absent)."""
    try:
        for line in Path("/proc/net/dev").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                return int(rest.split()[8])  # transmitted bytes
    except OSError:
        return None
    return None


def _manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "tuneforge.json").read_text())


def _accuracy(run: Path) -> float:
    found = sorted(run.glob("eval-*/metrics.json"))
    return float(json.loads(found[0].read_text())["accuracy"])


def scaling(work: Path, args: argparse.Namespace, data: tuple[Path, Path]) -> dict[str, Any]:
    train_f, dev_f = data
    common = ["--task", "classification", "--data", str(train_f), "--eval-data", str(dev_f), "--base-model",
              args.base_model, "--epochs", "1", "--seed", str(args.seed)]
    load_before = _load()
    local_s = tuneforge("train", *common, "--batch-size", "16", "--output", str(work / "local"),
                        log=work / "local.log")
    lo0 = _lo_bytes()
    ray_s = tuneforge("train", *common, "--batch-size", "16", "--executor", "ray", "--workers", "2", "--output",
                      str(work / "ray"), log=work / "ray.log")
    lo1 = _lo_bytes()
    rows = []
    for name, secs, run in (("1 process", local_s, work / "local"), ("Ray, 2 workers", ray_s, work / "ray")):
        m = _manifest(run)
        rows.append({"run": name, "accuracy": _accuracy(run), "wall_s": round(secs, 1),
                     "train_s": round(float(m["training"]["train_seconds"]), 1), "steps": m["training"]["steps"],
                     "trainable": m["training"]["trainable_parameters"]})
    speedup_wall = rows[0]["wall_s"] / rows[1]["wall_s"]
    speedup_train = rows[0]["train_s"] / rows[1]["train_s"]
    trainable = int(rows[1]["trainable"])
    grad_bytes = trainable * 4
    steps = int(rows[1]["steps"])
    measured = (lo1 - lo0) / steps if lo0 is not None and lo1 is not None and steps else None
    return {"rows": rows, "speedup_wall": round(speedup_wall, 3), "speedup_train": round(speedup_train, 3),
            "efficiency_wall": round(speedup_wall / 2, 3), "efficiency_train": round(speedup_train / 2, 3),
            "accuracy_gap_points": round(100 * (rows[1]["accuracy"] - rows[0]["accuracy"]), 2),
            "gradient_bytes_per_step": grad_bytes,
            "ring_allreduce_bytes_sent_per_worker_per_step": {str(n): round(2 * (n - 1) / n * grad_bytes)
                                                              for n in (2, 4, 16)},
            "loopback_bytes_per_step_measured": round(measured) if measured is not None else None,
            "load_before": load_before, "load_after": _load()}


def search(work: Path, args: argparse.Namespace, data: tuple[Path, Path]) -> dict[str, Any]:
    train_f, dev_f = data
    small = write_jsonl(work / "search-train.jsonl", read_jsonl(train_f)[: args.search_n])
    common = ["--task", "classification", "--data", str(small), "--eval-data", str(dev_f), "--base-model",
              "bert-tiny", "--epochs", "1", "--trials", str(args.trials)]
    for old in ("search-local", "search-ray"):  # a study left by an earlier run would count as done
        shutil.rmtree(work / old, ignore_errors=True)
    load_before = _load()
    seq_s = tuneforge("search", *common, "--output", str(work / "search-local"), log=work / "search-local.log")
    ray_s = tuneforge("search", *common, "--executor", "ray", "--parallel", "2", "--output",
                      str(work / "search-ray"), log=work / "search-ray.log")
    rows = []
    for name, secs, out in (("Optuna, sequential", seq_s, work / "search-local"),
                            ("Ray Tune, 2 parallel", ray_s, work / "search-ray")):
        best = json.loads((out / "best.json").read_text())
        rows.append({"search": name, "best_accuracy": round(float(best["value"]), 4), "wall_s": round(secs, 1),
                     "complete": best["trials"].get("complete"), "pruned": best["trials"].get("pruned")})
    return {"rows": rows, "speedup": round(rows[0]["wall_s"] / rows[1]["wall_s"], 3), "load_before": load_before,
            "load_after": _load()}


def _ray_train_workers() -> list[int]:
    import psutil

    pids = []
    for p in psutil.process_iter(["pid", "cmdline", "name"]):
        text = " ".join(p.info.get("cmdline") or []) + " " + (p.info.get("name") or "")
        if "RayTrainWorker" in text:
            pids.append(int(p.info["pid"]))
    return sorted(pids)


def faults(work: Path, args: argparse.Namespace, data: tuple[Path, Path]) -> dict[str, Any]:
    train_f, dev_f = data
    exe = Path(sys.executable).parent / "tuneforge"
    out, log = work / "faults", work / "faults.log"
    cmd = [str(exe), "train", "--task", "classification", "--data", str(train_f), "--eval-data", str(dev_f),
           "--base-model", "bert-tiny", "--epochs", "1", "--batch-size", "16", "--eval-every", "20",
           "--logging-steps", "5", "--executor", "ray", "--workers", "2", "--output", str(out)]
    t0 = time.perf_counter()
    killed: dict[str, Any] = {}
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "160"})
        while proc.poll() is None:
            time.sleep(1)
            steps = [int(s) for s in re.findall(r"step (\d+)/\d+", log.read_text(errors="replace"))]
            if not killed and steps and max(steps) >= 30:
                pids = _ray_train_workers()
                if pids:
                    os.kill(pids[-1], signal.SIGKILL)
                    killed = {"pid": pids[-1], "at_logged_step": max(steps), "seconds": round(time.perf_counter()
                                                                                                 - t0, 1)}
        code = proc.wait()
    if code != 0:
        sys.exit(f"the run with a killed worker failed (exit {code}); see {log}")
    m = _manifest(out)
    return {"killed": killed, "finished": True, "wall_s": round(time.perf_counter() - t0, 1),
            "steps": m["training"]["steps"], "distributed": m["distributed"], "accuracy": _accuracy(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-n", type=int, default=2000)
    ap.add_argument("--dev-n", type=int, default=400)
    ap.add_argument("--search-n", type=int, default=300)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--base-model", default="minilm")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--only", choices=["scaling", "search", "faults"], default=None)
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()

    d = shared_datasets() / "sst2"
    result: dict[str, Any] = {}
    path = Path(__file__).resolve().parent / "results" / "ray_scaling.json"
    if args.only and path.is_file():
        result = json.loads(path.read_text())  # keep the other parts of an earlier run
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = (write_jsonl(work / "train.jsonl", read_jsonl(d / "train.jsonl")[: args.train_n]),
                write_jsonl(work / "dev.jsonl", read_jsonl(d / "validation.jsonl")[: args.dev_n]))
        import ray

        parts = {"scaling": scaling, "search": search, "faults": faults}
        for name, fn in parts.items():
            if args.only in (None, name):
                result[name] = fn(work, args, data)
                write_result("ray_scaling", {**result, "machine": machine(), "ray": ray.__version__,
                                             "args": vars(args) | {"work": str(args.work)}})
    if "scaling" in result:
        print_table(result["scaling"]["rows"], ["run", "accuracy", "wall_s", "train_s", "steps", "trainable"])
    if "search" in result:
        print_table(result["search"]["rows"], ["search", "best_accuracy", "wall_s", "complete", "pruned"])
    if "faults" in result:
        print(json.dumps(result["faults"], indent=2))


if __name__ == "__main__":
    main()
