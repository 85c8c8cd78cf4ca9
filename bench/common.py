"""Helpers shared by the benchmarks: where the shared datasets are, running the CLI, printing tables."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def shared_datasets() -> Path:
    env = os.environ.get("TUNEFORGE_SHARED_DIR")
    d = (Path(env) if env else ROOT.parent / "shared") / "datasets"
    if not d.is_dir():
        sys.exit(f"the shared datasets are not at {d}; set TUNEFORGE_SHARED_DIR to the folder holding datasets/")
    return d


def tuneforge(*args: str, log: Path) -> float:
    """Run the `tuneforge` CLI (the installed entry point) and return its wall time in seconds."""
    exe = Path(sys.executable).parent / "tuneforge"
    t0 = time.perf_counter()
    with log.open("w") as f:
        r = subprocess.run([str(exe), *args], stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, "COLUMNS": "160"})
    if r.returncode != 0:
        sys.exit(f"tuneforge {' '.join(args)} failed; see {log}")
    return time.perf_counter() - t0


def machine() -> dict[str, Any]:
    import torch

    from tuneforge.training.hardware import bf16_supported, cpu_model

    # bf16: whether training ran with bf16 autocast (AVX512-BF16/AMX) or in fp32, several times slower
    return {"cpu": platform.processor() or platform.machine(), "cpu_model": cpu_model(), "cores": os.cpu_count(),
            "bf16": bf16_supported(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSONL file (blank lines skipped)."""
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` as a UTF-8 JSONL file at ``path``; returns it."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table()
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns])
    Console().print(t)
