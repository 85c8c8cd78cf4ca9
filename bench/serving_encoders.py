"""Encoder serving and adapters: `/v1/predict` and `/v1/embeddings` of `tuneforge serve` under load against the
same model in-process, and many LoRA adapters on one base (memory, mixed-adapter throughput).

    python bench/serving_encoders.py [--seconds 15] [--concurrency 1,8,32] [--adapters 1,10,50]

Models (trained once, kept in ~/.cache/tuneforge/bench): a minilm SST-2 classifier fully fine-tuned on 256
sentences (bench_serve.py's) and a minilm LoRA classifier trained on 100 SST-2 sentences. The 50 tenants' adapters
are copies of that LoRA run with their LoRA and head weights perturbed (+-1% noise, each copy its own seed), so
each is a distinct adapter of the same shape: a stand-in for 50 tenants' trainings. Every model is registered with
`tuneforge admin import-model` (the first through the CLI, the rest through the same `import_run` in-process).

Served: `tuneforge serve` in its own process (SQLite, no worker); N clients (asyncio + httpx in this process) each
send one SST-2 validation sentence per request. In-process: the same model's own call (what the server's
micro-batcher runs: the torch backend's loaded model, or the shared encoder's batch for adapters) on batches of N
sentences in this process, measured for half the time just before and half just after each served run (side by
side: the machine's load changes); the ratio is served requests/s over in-process examples/s. On a 2-core machine
the load generator shares the cores with the server, so the ratio is a lower bound.

Adapters: resident memory (RSS) of a fresh process that loads the models through `InferenceService` and predicts
once with each: 1 full model; 1, 10 and 50 LoRA adapters on one base; full models (10 loaded, the per-model growth
extrapolated to 50). Mixed-adapter throughput: clients spread over the 50 adapters (each request a different
tenant's) against all clients on one adapter and on the full model, served, same run.

Writes bench/results/serving_encoders.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import free_port, sentences, trained_model  # noqa: E402
from common import machine, print_table, shared_datasets, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
EXE = str(Path(sys.executable).parent / "tuneforge")


def lora_model(cache: Path, log: Path) -> Path:
    run = cache / "serve-minilm-sst2-lora100"
    if (run / "tuneforge.json").exists():
        return run
    data = cache / "sst2-lora100.jsonl"
    rows = (shared_datasets() / "sst2" / "train.jsonl").read_text().splitlines()[1000:1100]
    data.write_text("\n".join(rows) + "\n")
    with log.open("w") as f:
        r = subprocess.run([EXE, "train", "--task", "classification", "--data", str(data), "--base-model", "minilm",
                            "--method", "lora", "--epochs", "1", "--max-length", "64", "--output", str(run),
                            "--overwrite"], stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"training the LoRA model failed; see {log}")
    return run


def perturbed_copies(run: Path, dest: Path, n: int) -> list[Path]:
    """``n`` copies of a LoRA run, each with its adapter and head weights perturbed by its own +-1% noise."""
    import torch
    from safetensors.torch import load_file, save_file

    out = []
    weights = load_file(str(run / "adapter_model.safetensors"))
    for k in range(n):
        folder = dest / f"lora{k}"
        if not (folder / "tuneforge.json").exists():
            shutil.copytree(run, folder, ignore=shutil.ignore_patterns("checkpoints", "logs"), dirs_exist_ok=True)
            g = torch.Generator().manual_seed(k)
            noisy = {name: (w * (1 + 0.01 * torch.randn(w.shape, generator=g))).contiguous()
                     for name, w in weights.items()}
            save_file(noisy, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        out.append(folder)
    return out


# --- load generation -----------------------------------------------------------------------------------------------

async def load(url: str, key: str, path: str, body: Any, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` clients sending ``body(i, j)`` (client i, its j-th request) to ``path`` for ``seconds``."""
    import httpx

    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                                 timeout=120) as http:
        async def client(i: int) -> None:
            nonlocal errors
            j = 0
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                r = await http.post(path, json=body(i, j))
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
                    if errors == 1:
                        print(f"  {path}: {r.status_code} {r.text[:300]}", flush=True)
                j += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"requests": len(latencies), "errors": errors, "seconds": round(wall, 2), "rps": len(latencies) / wall,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def rate(fn: Any, texts: list[str], batch: int, seconds: float) -> float:
    """Examples/s of ``fn`` (a served model's own call: what the micro-batcher runs) on batches of ``batch``."""
    fn(texts[:batch])  # warm up
    n = i = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn([texts[(i + k) % len(texts)] for k in range(batch)])
        n += batch
        i += batch
    return n / (time.perf_counter() - t0)


# --- memory, each in a fresh process -------------------------------------------------------------------------------

MEMORY_PROBE = r"""
import json, os, sys, psutil
from pathlib import Path
from tuneforge.inference.serving import InferenceService
paths = [Path(p) for p in json.loads(sys.argv[1])]
proc = psutil.Process()
svc = InferenceService(capacity_bytes=10**12, max_adapters=max(64, len(paths)))
import torch, transformers, peft  # noqa: F401  (the runtime, in the baseline)
base = proc.memory_info().rss
for i, p in enumerate(paths):
    svc.predict(str(i), p, ["a warm up sentence"])
print(json.dumps({"baseline_mb": base / 2**20, "rss_mb": proc.memory_info().rss / 2**20,
                  "model_mb": sum(e.nbytes for e in svc.cache.entries()) / 2**20}))
"""


def memory(paths: list[Path]) -> dict[str, float]:
    r = subprocess.run([sys.executable, "-c", MEMORY_PROBE, json.dumps([str(p) for p in paths])],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if r.returncode != 0:
        sys.exit(f"memory probe failed:\n{r.stderr[-2000:]}")
    m = json.loads(r.stdout.strip().splitlines()[-1])
    m["growth_mb"] = m["rss_mb"] - m["baseline_mb"]
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15.0, help="load per measurement")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--adapters", default="1,10,50")
    ap.add_argument("--full-models", type=int, default=10, help="full models loaded for the memory comparison")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    counts = [int(x) for x in args.adapters.split(",")]
    cache = Path(os.environ.get("TUNEFORGE_CACHE_DIR", Path.home() / ".cache" / "tuneforge")) / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    texts = sentences()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tf-bench-enc-") as tmp:
        t = Path(tmp)
        full = trained_model(cache, t / "train.log")
        lora = lora_model(cache, t / "lora.log")
        adapters = perturbed_copies(lora, cache / "lora-tenants", max(counts))
        fulls = [t / f"full{k}" for k in range(args.full_models)]
        for f in fulls:
            shutil.copytree(full, f, ignore=shutil.ignore_patterns("checkpoints", "logs"))

        print("memory ...", flush=True)
        mem = {"full_1": memory([full])}
        for n in counts:
            mem[f"lora_{n}"] = memory(adapters[:n])
        mem[f"full_{args.full_models}"] = memory(fulls)

        data, db = t / "data", f"sqlite:///{t / 'tf.db'}"
        env = {**os.environ, "TUNEFORGE_DATA_DIR": str(data), "TUNEFORGE_DATABASE_URL": db}
        out = subprocess.run([EXE, "admin", "create-tenant", "bench", "--plan", "pro", "--requests-per-minute",
                              str(10**9), "--storage-bytes", str(10**12)], env=env, capture_output=True, text=True)
        key = next(w for w in out.stdout.split() if w.startswith("tf"))
        subprocess.run([EXE, "admin", "import-model", "bench", str(full), "--name", "full"], env=env, check=True,
                       capture_output=True)
        os.environ.update({"TUNEFORGE_DATA_DIR": str(data), "TUNEFORGE_DATABASE_URL": db})
        from tuneforge.jobs.imports import import_run
        from tuneforge.settings import Settings
        from tuneforge.store.db import make_engine, make_session_factory
        from tuneforge.store.storage import open_storage
        from tuneforge.store.tenants import get_tenant

        settings = Settings()
        engine = make_engine(db)
        with make_session_factory(engine)() as s:
            for k, folder in enumerate(adapters):
                import_run(s, tenant=get_tenant(s, "bench"), storage=open_storage(settings), settings=settings,
                           folder=folder, name=f"lora{k}", source="cli", local_base=True)
        engine.dispose()

        port = free_port()
        server = subprocess.Popen([EXE, "serve", "--port", str(port), "--workers", "0", "--log-level", "warning"],
                                  env=env, stdout=open(t / "serve.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        url = f"http://127.0.0.1:{port}"
        served: dict[str, dict[int, Any]] = {}
        limit: dict[str, dict[int, float]] = {}
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

            print("in-process models ...", flush=True)
            from tuneforge.inference.backends import get_backend
            from tuneforge.inference.serving import InferenceService
            from tuneforge.models.registry import resolve_base_model

            backend = get_backend("torch")
            predictor = backend.load_predictor(full)
            embedder = backend.load_embedder(resolve_base_model("minilm", settings.cache_dir).path)
            service = InferenceService(capacity_bytes=10**12, max_adapters=len(adapters) + 1)
            pairs = [service._shared_encoder(f"lora{k}", a) for k, a in enumerate(adapters)]
            shared = pairs[0][0] if pairs[0] else None
            tenants = [p[1] for p in pairs if p]
            assert shared is not None and len(tenants) == len(adapters)

            def one_adapter(xs: list[str]) -> Any:
                return shared._run([(tenants[0], e) for e in tenants[0].to_examples(xs)])

            def mixed_adapters(xs: list[str]) -> Any:
                start = int(time.perf_counter() * 1000)
                return shared._run([(tenants[(start + k) % len(tenants)], tenants[0].to_examples([x])[0])
                                    for k, x in enumerate(xs)])

            def predict(model: Any) -> Any:
                return lambda i, j: {"model": model(i, j), "inputs": [texts[(i * 7919 + j) % len(texts)]]}

            mixed_name = f"predict {len(adapters)} adapters mixed"
            loads = {
                "predict full": ("/v1/predict", predict(lambda i, j: "full"),
                                 lambda xs: predictor.run(predictor.prepare(xs))),
                "embeddings minilm": ("/v1/embeddings", lambda i, j: {"model": "minilm",
                                                                       "input": texts[(i * 7919 + j) % len(texts)]},
                                      lambda xs: embedder.run(embedder.prepare(xs))),
                "predict 1 adapter": ("/v1/predict", predict(lambda i, j: "lora0"), one_adapter),
                mixed_name: ("/v1/predict", predict(lambda i, j: f"lora{(i * 13 + j) % len(adapters)}"),
                             mixed_adapters),
            }
            for name, (path, body, local) in loads.items():
                asyncio.run(load(url, key, path, body, 8, 3.0))  # load the models, warm up
                served[name], limit[name] = {}, {}
                for c in levels:  # in-process just before and just after the served run: side by side
                    before = rate(local, texts, c, args.seconds / 2)
                    served[name][c] = asyncio.run(load(url, key, path, body, c, args.seconds))
                    limit[name][c] = (before + rate(local, texts, c, args.seconds / 2)) / 2
                print(name, {c: (round(r["rps"], 1), round(limit[name][c], 1)) for c, r in served[name].items()},
                      flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    load_after = os.getloadavg()

    rows = []
    for name, by_level in served.items():
        ref = limit[name]
        for c in levels:
            s = by_level[c]
            rows.append({"load": name, "clients": c, "req/s": s["rps"], "p50 ms": s["p50_ms"], "p99 ms": s["p99_ms"],
                         "errors": s["errors"], "in-process ex/s (batch=clients)": ref[c],
                         "ratio": s["rps"] / ref[c]})
    print_table(rows, list(rows[0]))
    full_mb = mem["full_1"]["growth_mb"]
    per_full = (mem[f"full_{args.full_models}"]["growth_mb"] - full_mb) / max(1, args.full_models - 1)
    mem_rows = [{"models": "1 full model", "rss growth MB": full_mb, "model tensors MB": mem["full_1"]["model_mb"],
                 "x one full model": 1.0}]
    for n in counts:
        m = mem[f"lora_{n}"]
        mem_rows.append({"models": f"{n} LoRA adapter(s) on one base", "rss growth MB": m["growth_mb"],
                         "model tensors MB": m["model_mb"], "x one full model": m["growth_mb"] / full_mb})
    m = mem[f"full_{args.full_models}"]
    mem_rows.append({"models": f"{args.full_models} full models (measured)", "rss growth MB": m["growth_mb"],
                     "model tensors MB": m["model_mb"], "x one full model": m["growth_mb"] / full_mb})
    est = full_mb + per_full * 49
    mem_rows.append({"models": "50 full models (extrapolated)", "rss growth MB": est,
                     "model tensors MB": mem["full_1"]["model_mb"] * 50, "x one full model": est / full_mb})
    print_table(mem_rows, list(mem_rows[0]))
    mixed = {c: served[f"predict {len(adapters)} adapters mixed"][c]["rps"] for c in levels}
    single = {c: served["predict 1 adapter"][c]["rps"] for c in levels}
    full_rps = {c: served["predict full"][c]["rps"] for c in levels}
    ip_mixed, ip_single = limit[f"predict {len(adapters)} adapters mixed"], limit["predict 1 adapter"]
    adapter_rows = [{"clients": c, "mixed req/s": mixed[c], "1 adapter req/s": single[c], "full model req/s":
                     full_rps[c], "mixed / 1 adapter": mixed[c] / single[c], "mixed / full": mixed[c] / full_rps[c],
                     "in-process mixed / 1 adapter": ip_mixed[c] / ip_single[c],
                     "in-process mixed / full": ip_mixed[c] / limit["predict full"][c]} for c in levels]
    print_table(adapter_rows, list(adapter_rows[0]))
    path = write_result("serving_encoders", {
        "benchmark": "serving_encoders", "command": "python bench/serving_encoders.py " + " ".join(sys.argv[1:]),
        "models": {"full": "minilm SST-2 classifier, full fine-tuning on 256 sentences",
                   "lora": "minilm SST-2 LoRA classifier on 100 sentences; the other adapters are perturbed copies"},
        "seconds_per_level": args.seconds, "load_average_before": load_before, "load_average_after": load_after,
        "machine": machine(), "served": rows, "memory": mem_rows, "adapters": adapter_rows,
        "raw": {"served": served, "in_process": limit, "memory": mem}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
