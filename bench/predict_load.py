"""`/v1/predict` while one client sends maximal requests: do the small requests of others stay fast?

    python bench/predict_load.py [--seconds 60] [--clients 16] [--big-tenant other|same] [--model-dir RUN]

Two phases in one run against one `tuneforge serve` (SQLite, its own process, a free loopback port):

- quiet: ``--clients`` clients (asyncio + httpx, in this process) each send one SST-2 validation sentence per
  request for ``--seconds``;
- loaded: the same clients again, while one more client (its own process, so its big bodies do not hold this
  process's event loop) sends maximal requests back to back: the largest the server's limits allow (256 inputs
  filling the 4 MiB body; 41 inputs of 100,000 characters) alternating with over-limit ones that must be refused
  quickly (a body over 4 MiB -> 413, 257 inputs -> 400, one input of 100,001 characters -> 400).

The maximal client is another tenant with its own copy of the model (``--big-tenant other``, the multi-tenant case
of issue 17: its own micro-batcher, the cores shared), or the small clients' tenant and model
(``--big-tenant same``: its requests queue in the same micro-batcher as the small ones).

The model is the minilm (all-MiniLM-L6-v2) SST-2 classifier of bench/bench_serve.py (trained once, cached), or the
run folder given with --model-dir. The table shows p50/p99 of the small requests per phase and the ratio loaded /
quiet p99 (the target is <= 2), errors (any non-2xx or failed small request; any 5xx anywhere), the maximal
client's requests by kind with their status codes and latencies, and the server's RSS (psutil, the server process
and its children) sampled every second: at the start (after warm-up), the middle and the end of the run.
Writes bench/results/predict_load.json (predict_load-same-tenant.json with ``--big-tenant same``).
Loopback only; every loop ends by itself after its phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import free_port, sentences, trained_model  # noqa: E402
from common import machine, print_table, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REQUEST_TIMEOUT_S = 60.0


def limits() -> dict[str, int]:
    """The server's request limits (its defaults: the benchmark sets none)."""
    from tuneforge.settings import Settings

    f = Settings.model_fields
    return {"max_request_bytes": int(f["max_request_bytes"].default),
            "max_predict_inputs": int(f["max_predict_inputs"].default),
            "max_input_chars": int(f["max_input_chars"].default)}


def register(run: Path, data_dir: Path, url: str, names: list[str]) -> dict[str, tuple[str, str]]:
    """One tenant without rate limits per name, each with its own copy of ``run`` as a model:
    name -> (API key, model id)."""
    from tuneforge.store.db import make_engine, make_session_factory, upgrade, utcnow
    from tuneforge.store.models import Model
    from tuneforge.store.storage import LocalStorage
    from tuneforge.store.tenants import create_tenant, ensure_plans

    engine = make_engine(url)
    upgrade(engine)
    out: dict[str, tuple[str, str]] = {}
    with make_session_factory(engine)() as s:
        ensure_plans(s)
        for name in names:
            tenant, _, key = create_tenant(s, name=name, plan="pro",
                                           overrides={"requests_per_minute": 10**9, "storage_bytes": 10**12})
            model_id, storage_key = f"ft:minilm:{name}:sst2", f"models/{tenant.id}/{name}"
            staging = data_dir / f"staging-{name}"
            shutil.copytree(run, staging, ignore=shutil.ignore_patterns("checkpoints", "logs", "eval-*"))
            size = LocalStorage(data_dir / "artifacts").put_dir(storage_key, staging)
            s.add(Model(id=model_id, tenant_id=tenant.id, job_id="imported", base_model="minilm",
                        task="classification", storage_key=storage_key, bytes=size, created_at=utcnow()))
            out[name] = (key, model_id)
        s.commit()
    engine.dispose()
    return out


def filler(texts: list[str], n: int) -> str:
    """``n`` ASCII characters of real sentences (so tokenizing them costs what real text costs)."""
    src = " ".join(t.encode("ascii", "ignore").decode() for t in texts[:200])
    return (src * (n // len(src) + 1))[:n]


def big_bodies(model: str, texts: list[str], lim: dict[str, int]) -> dict[str, tuple[bytes, tuple[int, ...]]]:
    """The maximal client's requests: kind -> (JSON body, the status codes that are right for it)."""
    n_max, chars_max, body_max = lim["max_predict_inputs"], lim["max_input_chars"], lim["max_request_bytes"]

    def body(inputs: list[str]) -> bytes:
        return json.dumps({"model": model, "inputs": inputs}).encode()

    overhead = len(body([""] * n_max))
    per = (body_max - overhead) // n_max
    full = body([filler(texts, per)] * n_max)
    assert len(full) <= body_max, len(full)
    n_long = (body_max - len(body([]))) // (chars_max + 4)
    long = body([filler(texts, chars_max)] * n_long)
    assert len(long) <= body_max, len(long)
    return {
        f"{n_max} x {per:,} chars": (full, (200,)),
        f"{n_long} x {chars_max:,} chars": (long, (200,)),
        "body over limit": (body([filler(texts, per + 64)] * n_max), (413,)),
        f"{n_max + 1} inputs": (body([texts[0]] * (n_max + 1)), (400,)),
        f"1 x {chars_max + 1:,} chars": (body([filler(texts, chars_max + 1)]), (400,)),
    }


def big_client(url: str, key: str, bodies: dict[str, tuple[bytes, tuple[int, ...]]], ready: Any, stop: Any,
               deadline: float, results: Any) -> None:
    """Maximal requests back to back (a valid one between every two over-limit ones) until ``stop`` is set
    (or ``deadline``, wall clock, passes); puts {kind: {"status": Counter, "latencies": [...]}} on ``results``."""
    import httpx

    valid = [k for k, (_, ok) in bodies.items() if ok == (200,)]
    refused = [k for k in bodies if k not in valid]
    order = [k for i in range(len(refused)) for k in (valid[i % len(valid)], refused[i])]
    stats: dict[str, dict[str, Any]] = {k: {"status": Counter(), "latencies": []} for k in bodies}
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S) as http:
        ready.set()
        i = 0
        while not stop.is_set() and time.time() < deadline:
            kind = order[i % len(order)]
            i += 1
            t0 = time.perf_counter()
            try:
                status: int | str = http.post("/v1/predict", content=bodies[kind][0]).status_code
            except httpx.HTTPError as e:
                status = type(e).__name__
            stats[kind]["status"][status] += 1
            stats[kind]["latencies"].append(time.perf_counter() - t0)
    results.put({k: {"status": dict(v["status"]), "latencies": v["latencies"]} for k, v in stats.items()})


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))] * 1000 if v else float("nan")


async def small_load(url: str, key: str, model: str, texts: list[str], clients: int,
                     seconds: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    status: Counter[int | str] = Counter()
    stop_at = time.perf_counter() + seconds
    lim = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=lim,
                                 timeout=REQUEST_TIMEOUT_S) as http:
        async def client(i: int) -> None:
            j = i
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    r = await http.post("/v1/predict", json={"model": model, "inputs": [texts[j % len(texts)]]})
                    status[r.status_code] += 1
                    if 200 <= r.status_code < 300:
                        latencies.append(time.perf_counter() - t0)
                except httpx.HTTPError as e:
                    status[type(e).__name__] += 1
                j += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.perf_counter() - t0
    ok = len(latencies)
    return {"requests": sum(status.values()), "ok": ok, "errors": sum(status.values()) - ok,
            "server_errors": sum(n for s, n in status.items() if isinstance(s, int) and s >= 500),
            "status": {str(k): v for k, v in status.items()}, "seconds": wall, "rps": ok / wall,
            "p50_ms": pct(latencies, 0.50), "p99_ms": pct(latencies, 0.99), "max_ms": pct(latencies, 1.0)}


class RssSampler:
    """The server's resident memory (process + children), once a second, in a thread, until stopped."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def rss(self) -> int:
        import psutil

        total = self.proc.memory_info().rss
        for c in self.proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a child that just ended
                total += c.memory_info().rss
        return int(total)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._t0, self.rss()))
            self._stop.wait(1.0)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.samples.append((time.perf_counter() - self._t0, self.rss()))


def loaded_phase(url: str, small: tuple[str, str], big: tuple[str, str], texts: list[str], clients: int,
                 seconds: float, bodies: dict[str, tuple[bytes, tuple[int, ...]]]) -> tuple[dict, dict]:
    ctx = mp.get_context("spawn")
    ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=big_client, args=(url, big[0], bodies, ready, stop,
                                                time.time() + seconds + 2 * REQUEST_TIMEOUT_S, results))
    proc.start()
    try:
        if not ready.wait(120):
            sys.exit("the maximal client did not start")
        time.sleep(1.0)  # its first maximal request is in flight
        served = asyncio.run(small_load(url, small[0], small[1], texts, clients, seconds))
        stop.set()
        big_stats = results.get(timeout=3 * REQUEST_TIMEOUT_S)
    finally:
        stop.set()
        proc.join(timeout=3 * REQUEST_TIMEOUT_S)
        if proc.is_alive():
            proc.terminate()
    return served, big_stats


def start_server(t: Path, url_db: str) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {**os.environ, "TUNEFORGE_DATA_DIR": str(t / "data"), "TUNEFORGE_DATABASE_URL": url_db}
    server = subprocess.Popen([str(Path(sys.executable).parent / "tuneforge"), "serve", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "0", "--log-level", "warning"], env=env,
                              stdout=open(t / "serve.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.5)
    server.terminate()
    sys.exit(f"the server did not start; see {t / 'serve.log'}")


def warm_up(url: str, tenants: dict[str, tuple[str, str]], texts: list[str], bodies: dict) -> None:
    """Load both models and run one request of each kind (so first-time allocations are not counted as growth)."""
    import httpx

    for key, model in tenants.values():
        asyncio.run(small_load(url, key, model, texts, 4, 2.0))
    key = tenants["big"][0]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                      timeout=REQUEST_TIMEOUT_S) as http:
        for kind, (body, ok) in bodies.items():
            code = http.post("/v1/predict", content=body).status_code
            if code not in ok:
                sys.exit(f"warm-up: the request '{kind}' answered {code}, expected {ok}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    ap.add_argument("--clients", type=int, default=16, help="clients sending small requests")
    ap.add_argument("--big-tenant", choices=("other", "same"), default="other",
                    help="whose tenant (and model) the maximal client uses")
    ap.add_argument("--model-dir", type=Path, help="a finished minilm classification run to serve")
    args = ap.parse_args()
    if args.seconds <= 0 or args.clients < 1:
        sys.exit("--seconds must be > 0 and --clients >= 1")
    cache = Path(os.environ.get("TUNEFORGE_CACHE_DIR", Path.home() / ".cache" / "tuneforge")) / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    texts = sentences()
    lim = limits()
    with tempfile.TemporaryDirectory(prefix="tf-bench-load-") as tmp:
        t = Path(tmp)
        run = args.model_dir or trained_model(cache, t / "train.log")
        url_db = f"sqlite:///{t / 'tf.db'}"
        names = ["small", "big"] if args.big_tenant == "other" else ["small"]
        tenants = register(run, t / "data", url_db, names)
        tenants.setdefault("big", tenants["small"])
        bodies = big_bodies(tenants["big"][1], texts, lim)
        server, url = start_server(t, url_db)
        try:
            warm_up(url, tenants, texts, bodies)
            with RssSampler(server.pid) as rss:
                print(f"quiet: {args.clients} clients, {args.seconds:g} s ...", flush=True)
                load_avg = {"quiet_start": os.getloadavg()[0]}
                quiet = asyncio.run(small_load(url, *tenants["small"], texts, args.clients, args.seconds))
                t_mid = time.perf_counter() - rss._t0
                load_avg["loaded_start"] = os.getloadavg()[0]
                print(f"loaded: {args.clients} clients + 1 maximal client, {args.seconds:g} s ...", flush=True)
                loaded, big = loaded_phase(url, tenants["small"], tenants["big"], texts, args.clients,
                                           args.seconds, bodies)
                load_avg["loaded_end"] = os.getloadavg()[0]
            alive = server.poll() is None
        finally:
            server.terminate()
            server.wait(timeout=60)
    samples = rss.samples
    mid = min(samples, key=lambda s: abs(s[0] - (samples[0][0] + samples[-1][0]) / 2))
    mib = 1024 * 1024
    memory = {"start_mib": samples[0][1] / mib, "middle_mib": mid[1] / mib, "end_mib": samples[-1][1] / mib,
              "max_mib": max(r for _, r in samples) / mib, "loaded_phase_start_mib":
              min(samples, key=lambda s: abs(s[0] - t_mid))[1] / mib, "samples": len(samples)}
    ratio = loaded["p99_ms"] / quiet["p99_ms"]
    # the share of its quiet throughput the small tenant keeps: in a closed loop its latency scales with 1 / share
    kept = loaded["rps"] / quiet["rps"]
    big_rows = []
    for kind, st in big.items():
        wrong = sum(n for s, n in st["status"].items() if s not in bodies[kind][1])
        big_rows.append({"maximal client": kind, "requests": len(st["latencies"]),
                         "status": ", ".join(f"{s}: {n}" for s, n in st["status"].items()),
                         "unexpected": wrong, "p50 ms": pct(st["latencies"], 0.5),
                         "max ms": pct(st["latencies"], 1.0)})
    big_5xx = sum(n for st in big.values() for s, n in st["status"].items() if isinstance(s, int) and s >= 500)
    big_failed = sum(r["unexpected"] for r in big_rows)
    model_name = "minilm (all-MiniLM-L6-v2) SST-2 classifier" if not args.model_dir else str(args.model_dir)
    rows = [{"phase": name, "model": "minilm" if not args.model_dir else args.model_dir.name,
             "clients": args.clients if name == "quiet" else f"{args.clients} + 1 maximal",
             "small req/s": r["rps"], "p50 ms": r["p50_ms"], "p99 ms": r["p99_ms"], "max ms": r["max_ms"],
             "errors": r["errors"], "5xx": r["server_errors"]} for name, r in (("quiet", quiet), ("loaded", loaded))]
    print_table(rows, list(rows[0]))
    print_table(big_rows, list(big_rows[0]))
    print(f"p99 loaded / quiet: {ratio:.2f} (target <= 2)  |  small req/s kept: {kept:.0%}  |  "
          f"server RSS MiB start {memory['start_mib']:.0f}, "
          f"middle {memory['middle_mib']:.0f}, end {memory['end_mib']:.0f}, max {memory['max_mib']:.0f}"
          f"  |  maximal client: {big_5xx} 5xx, {big_failed} unexpected answers  |  server alive: {alive}")
    verdict = {"p99_ratio": ratio, "p99_within_2x": ratio <= 2.0, "p50_ratio": loaded["p50_ms"] / quiet["p50_ms"],
               "small_throughput_kept": kept,
               "small_errors": quiet["errors"] + loaded["errors"],
               "server_errors": quiet["server_errors"] + loaded["server_errors"] + big_5xx,
               "maximal_unexpected_answers": big_failed, "server_alive": alive,
               "rss_growth_mib": memory["end_mib"] - memory["start_mib"]}
    name = "predict_load" if args.big_tenant == "other" else "predict_load-same-tenant"
    path = write_result(name, {
        "benchmark": "predict_load", "model": model_name, "seconds_per_phase": args.seconds,
        "clients": args.clients, "big_tenant": args.big_tenant, "limits": lim, "database": "sqlite",
        "machine": machine(), "load_average_1min": load_avg, "verdict": verdict, "rows": rows,
        "quiet": quiet, "loaded": loaded, "maximal_client": big_rows, "memory": memory,
        "rss_samples_mib": [[round(s, 1), round(r / mib, 1)] for s, r in samples]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
