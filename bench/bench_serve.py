"""Serving throughput: `/v1/predict` of `tuneforge serve` under load, against the model in-process (the limit).

    python bench/bench_serve.py [--seconds 20] [--concurrency 1,8,32] [--model-dir RUN]

A minilm (all-MiniLM-L6-v2) classifier fine-tuned briefly on SST-2 (or the run folder given with --model-dir) is
registered for a benchmark tenant, and `tuneforge serve` runs it in its own process on a free loopback port
(SQLite, no worker). For each concurrency level, that many clients (asyncio + httpx, in this process) send one
SST-2 validation sentence per request for --seconds; the table shows requests/s and p50/p99 latency. The limit
is the same model in this process, `Predictor.predict` (tokenize, forward, decode) on batches as large as the
number of clients, on the same sentences; the ratio is served requests/s over in-process examples/s.

On a 2-core machine the load generator shares the cores with the server, so the ratio is a lower bound.
"limit ex/s" is the in-process examples/s at batch size = clients, "limit batch ms" the time of one such batch.
Writes bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, shared_datasets, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def sentences(n: int | None = None) -> list[str]:
    rows = [json.loads(x) for x in (shared_datasets() / "sst2" / "validation.jsonl").read_text().splitlines() if x]
    texts = [r.get("text") or r.get("sentence") for r in rows]
    return [t for t in texts if t][:n]


def trained_model(cache: Path, log: Path) -> Path:
    """A minilm SST-2 classifier (trained once on 256 sentences and kept in ``cache``)."""
    run = cache / "serve-minilm-sst2"
    if (run / "tuneforge.json").exists():
        return run
    data = cache / "sst2-256.jsonl"
    rows = [json.loads(x) for x in (shared_datasets() / "sst2" / "train.jsonl").read_text().splitlines()[:256]]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    exe = Path(sys.executable).parent / "tuneforge"
    print(f"training the benchmark model once into {run} (log: {log}) ...", flush=True)
    with log.open("w") as f:
        r = subprocess.run([str(exe), "train", "--task", "classification", "--data", str(data), "--base-model",
                            "minilm", "--epochs", "1", "--max-length", "64", "--output", str(run), "--overwrite"],
                           stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"training the benchmark model failed; see {log}")
    return run


def register(run: Path, data_dir: Path, url: str) -> tuple[str, str]:
    """Create a tenant without limits and import ``run`` as its model; returns (API key, model id)."""
    from tuneforge.store.db import make_engine, make_session_factory, upgrade, utcnow
    from tuneforge.store.models import Model
    from tuneforge.store.storage import LocalStorage
    from tuneforge.store.tenants import create_tenant, ensure_plans

    engine = make_engine(url)
    upgrade(engine)
    with make_session_factory(engine)() as s:
        ensure_plans(s)
        tenant, _, key = create_tenant(s, name="bench", plan="pro",
                                       overrides={"requests_per_minute": 10**9, "storage_bytes": 10**12})
        model_id, storage_key = "ft:minilm:bench:sst2", f"models/{tenant.id}/bench"
        staging = data_dir / "staging"
        shutil.copytree(run, staging, ignore=shutil.ignore_patterns("checkpoints", "logs", "eval-*"))
        size = LocalStorage(data_dir / "artifacts").put_dir(storage_key, staging)
        s.add(Model(id=model_id, tenant_id=tenant.id, job_id="imported", base_model="minilm",
                    task="classification", storage_key=storage_key, bytes=size, created_at=utcnow()))
        s.commit()
    engine.dispose()
    return key, model_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(url: str, key: str, model: str, texts: list[str], clients: int, seconds: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                                 timeout=120) as http:
        async def client(i: int) -> None:
            nonlocal errors
            j = i
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                r = await http.post("/v1/predict", json={"model": model, "inputs": [texts[j % len(texts)]]})
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
                j += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"requests": len(latencies), "errors": errors, "seconds": wall, "rps": len(latencies) / wall,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def in_process(run: Path, texts: list[str], batch: int, seconds: float) -> dict[str, Any]:
    from tuneforge.inference import load_predictor

    predictor = load_predictor(run)
    predictor.predict(texts[:batch])  # warm up
    n = i = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        chunk = [texts[(i + k) % len(texts)] for k in range(batch)]
        predictor.predict(chunk, batch_size=batch)
        n += batch
        i += batch
    wall = time.perf_counter() - t0
    return {"examples_per_second": n / wall, "batch_ms": wall / (n / batch) * 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="load per concurrency level")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--model-dir", type=Path, help="a finished minilm classification run to serve")
    ap.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    cache = Path(os.environ.get("TUNEFORGE_CACHE_DIR", Path.home() / ".cache" / "tuneforge")) / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    texts = sentences()
    with tempfile.TemporaryDirectory(prefix="tf-bench-serve-") as tmp:
        t = Path(tmp)
        run = args.model_dir or trained_model(cache, t / "train.log")
        url_db = args.database_url or f"sqlite:///{t / 'tf.db'}"
        key, model = register(run, t / "data", url_db)
        port = free_port()
        env = {**os.environ, "TUNEFORGE_DATA_DIR": str(t / "data"), "TUNEFORGE_DATABASE_URL": url_db}
        server = subprocess.Popen([str(Path(sys.executable).parent / "tuneforge"), "serve", "--port", str(port),
                                   "--workers", "0", "--log-level", "warning"], env=env,
                                  stdout=open(t / "serve.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            for _ in range(120):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                sys.exit(f"the server did not start; see {t / 'serve.log'}")
            asyncio.run(load(url, key, model, texts, 4, 2.0))  # load the model and warm up
            served = {c: asyncio.run(load(url, key, model, texts, c, args.seconds)) for c in levels}
        finally:
            server.terminate()
            server.wait(timeout=60)
        limit = {c: in_process(run, texts, c, args.seconds) for c in levels}
    rows = []
    for c in levels:
        s, lim = served[c], limit[c]
        rows.append({"clients": c, "req/s": s["rps"], "p50 ms": s["p50_ms"], "p99 ms": s["p99_ms"],
                     "errors": s["errors"], "limit ex/s": lim["examples_per_second"],
                     "limit batch ms": lim["batch_ms"], "ratio": s["rps"] / lim["examples_per_second"]})
    print_table(rows, list(rows[0]))
    path = write_result("serve", {"benchmark": "serve", "model": "minilm (all-MiniLM-L6-v2) SST-2 classifier",
                                  "seconds_per_level": args.seconds, "database": url_db.split(":")[0],
                                  "server_omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE (serve)"),
                                  "machine": machine(), "rows": rows, "served": served, "in_process": limit})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
