"""Chat serving: streamed `/v1/chat/completions` of `tuneforge serve` with smollm2 at 1, 8 and 32 concurrent
streams (continuous batching), against plain `model.generate` in-process (one stream).

    python bench/chat_serving.py [--max-tokens 48] [--concurrency 1,8,32] [--single-rounds 3] [--model NAME]

`tuneforge serve` runs in its own process on a free loopback port (SQLite, no worker) with the base model
(`smollm2`, SmolLM2-135M-Instruct, fp32). A benchmark tenant without rate limits sends streamed chat requests
(`stream: true`, `stream_options.include_usage`, temperature 0, `max_tokens`), one Alpaca instruction each
(../shared/datasets/alpaca/test.jsonl, rendered by the server with the model's chat template), from asyncio + httpx
clients in this process. For each level, that many streams start together (level 1: `--single-rounds` streams one
after the other); the table shows

* `tok/s` — generated tokens of all streams (the usage chunks' `completion_tokens`) over the wall time of the level;
* `x one` — that over level 1's tok/s (what batching buys);
* `TTFT p50 / p99 ms` — time from sending a request to its first content delta;
* `stream tok/s` — the median of each stream's tokens over its own duration.

The reference is plain transformers `model.generate(do_sample=False, use_cache=True)` in this process on the same
prompt ids, one prompt at a time (after a warm-up), with the server stopped and `OMP_WAIT_POLICY=PASSIVE` (as the
server runs): `single / generate` is level 1's tok/s over it. On a 2-core machine the load generator and the
server share the cores. Writes bench/results/chat_serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
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
# as `tuneforge serve` sets it for itself: OpenMP threads that spin between operations starve everything else on a
# busy machine (plain generate here measured 1 tok/s spinning and 10 tok/s passive on the shared 2 cores)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def conversations(n: int) -> list[list[dict[str, str]]]:
    rows = [json.loads(x) for x in (shared_datasets() / "alpaca" / "test.jsonl").read_text().splitlines() if x]
    long = [r["messages"][:-1] for r in rows if len(r["messages"][-1]["content"]) >= 300]
    return (long * (n // max(1, len(long)) + 1))[:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tenant(db_url: str) -> str:
    from tuneforge.store.db import make_engine, make_session_factory, upgrade
    from tuneforge.store.tenants import create_tenant, ensure_plans

    engine = make_engine(db_url)
    upgrade(engine)
    with make_session_factory(engine)() as s:
        ensure_plans(s)
        _, _, key = create_tenant(s, name="bench", plan="pro",
                                  overrides={"requests_per_minute": 10**9, "tokens_per_minute": 2**31 - 1})
    engine.dispose()
    return key


async def one_stream(http: Any, model: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, float]:
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    first = None
    tokens = 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {(await r.aread()).decode()[:300]}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter()
    end = time.perf_counter()
    return {"tokens": tokens, "ttft": (first or end) - t0, "seconds": end - t0}


async def level(url: str, key: str, model: str, convs: list[list[dict[str, str]]], clients: int, rounds: int,
                max_tokens: int) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                                 timeout=600) as http:
        streams: list[dict[str, float]] = []
        t0 = time.perf_counter()
        for k in range(rounds):
            batch = [convs[(k * clients + i) % len(convs)] for i in range(clients)]
            streams += await asyncio.gather(*(one_stream(http, model, m, max_tokens) for m in batch))
        wall = time.perf_counter() - t0
    ttft = sorted(s["ttft"] for s in streams)

    def pct(p: float) -> float:
        return ttft[min(len(ttft) - 1, int(p * len(ttft)))] * 1000

    return {"streams": len(streams), "tokens": sum(s["tokens"] for s in streams), "seconds": wall,
            "tok_s": sum(s["tokens"] for s in streams) / wall, "ttft_p50_ms": pct(0.5), "ttft_p99_ms": pct(0.99),
            "stream_tok_s": statistics.median(s["tokens"] / s["seconds"] for s in streams)}


def plain_generate(path: Path, convs: list[list[dict[str, str]]], max_tokens: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.tasks.generation.template import end_of_turn_ids, render_prompt

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    eos = sorted(end_of_turn_ids(tok, model.generation_config))
    tokens, seconds = 0, 0.0
    with torch.inference_mode():
        for i, conv in enumerate([convs[0], *convs]):
            ids = torch.tensor([render_prompt(tok, conv)])
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                 do_sample=False, use_cache=True, eos_token_id=eos, pad_token_id=tok.pad_token_id)
            took = time.perf_counter() - t0
            if i:  # the first call warms up
                tokens += int(out.shape[1] - ids.shape[1])
                seconds += took
    return {"tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--single-rounds", type=int, default=3, help="level 1: streams one after the other")
    ap.add_argument("--model", default="smollm2", help="a base chat model served by name")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    convs = conversations(max(levels))

    from tuneforge.models.registry import resolve_base_model
    from tuneforge.settings import Settings

    path = resolve_base_model(args.model, Settings().cache_dir).path
    with tempfile.TemporaryDirectory(prefix="tf-bench-chat-") as tmp:
        t = Path(tmp)
        db_url = f"sqlite:///{t / 'tf.db'}"
        key = tenant(db_url)
        port = free_port()
        env = {**os.environ, "TUNEFORGE_DATA_DIR": str(t / "data"), "TUNEFORGE_DATABASE_URL": db_url}
        log = t / "serve.log"
        server = subprocess.Popen([str(Path(sys.executable).parent / "tuneforge"), "serve", "--port", str(port),
                                   "--workers", "0", "--log-level", "warning"], env=env,
                                  stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        url = f"http://127.0.0.1:{port}"
        served: dict[int, dict[str, Any]] = {}
        try:
            import httpx

            for _ in range(240):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                sys.exit(f"the server did not start; see {log}")
            asyncio.run(level(url, key, args.model, convs, 2, 1, 8))  # load the model, warm up
            for c in levels:
                served[c] = asyncio.run(level(url, key, args.model, convs, c, args.single_rounds if c == 1 else 1,
                                              args.max_tokens))
                print(f"{c} streams: {served[c]['tok_s']:.1f} tok/s", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    plain = plain_generate(path, convs[: args.single_rounds], args.max_tokens)
    one = served[levels[0]]["tok_s"]
    rows = [{"streams": c, "tok/s": s["tok_s"], "x one": s["tok_s"] / one, "TTFT p50 ms": s["ttft_p50_ms"],
             "TTFT p99 ms": s["ttft_p99_ms"], "stream tok/s": s["stream_tok_s"], "tokens": s["tokens"]}
            for c, s in served.items()]
    rows.append({"streams": "generate (in-process, 1)", "tok/s": plain["tok_s"], "x one": plain["tok_s"] / one,
                 "tokens": plain["tokens"]})
    print_table(rows, ["streams", "tok/s", "x one", "TTFT p50 ms", "TTFT p99 ms", "stream tok/s", "tokens"])
    print(f"single stream / plain generate: {one / plain['tok_s']:.2f}")
    path_out = write_result("chat_serving", {
        "benchmark": "chat_serving", "model": args.model, "max_tokens": args.max_tokens,
        "command": " ".join(["python", "bench/chat_serving.py", *sys.argv[1:]]), "machine": machine(),
        "served": served, "plain_generate": plain, "single_over_generate": one / plain["tok_s"], "rows": rows})
    print(f"wrote {path_out}")


if __name__ == "__main__":
    main()
