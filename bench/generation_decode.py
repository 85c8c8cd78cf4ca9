"""Decode speed of SmolLM2-135M-Instruct: tuneforge's generation path against plain `model.generate`.

    python bench/generation_decode.py [--new-tokens 64] [--repeats 2] [--single 3] [--static-cache] [--model PATH]

Eight Alpaca instructions (../shared/datasets/alpaca/test.jsonl, the first with long reference replies) rendered
with the model's chat template, decoded greedily with the KV cache for `--new-tokens` tokens: the first `--single`
one prompt at a time (batch 1), and all eight together (batch 8, left-padded):
* `plain generate` — transformers' `model.generate(do_sample=False, use_cache=True)` on the same prompt ids, fp32;
* `tuneforge predict` — `GenerationTask.predict`, the path of `tuneforge predict` / `evaluate` / `chat`
  (rendering, batching sorted by length, the per-row decoder for end-of-turn and stop strings), fp32;
* `tuneforge predict, bf16 autocast` — the same under `torch.autocast(bfloat16)` (the run's `bf16` flag);
* `plain generate, bf16 weights` — whether a model cast to bfloat16 would help on this CPU;
* with `--static-cache`, `plain generate, static cache` — whether transformers' static KV cache would.
tokens/s counts generated tokens (each row up to and including its end-of-turn token). Variants run interleaved,
`--repeats` times after one warm-up each; the table shows the median. Writes bench/results/generation_decode.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, shared_datasets, write_result  # noqa: E402


def prompts(n: int) -> list[list[dict[str, str]]]:
    rows = [json.loads(x) for x in (shared_datasets() / "alpaca" / "test.jsonl").read_text().splitlines() if x]
    long = [r["messages"] for r in rows if len(r["messages"][-1]["content"]) >= 300]
    return [m[:-1] for m in long[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--single", type=int, default=3, help="prompts decoded one at a time (batch 1)")
    ap.add_argument("--static-cache", action="store_true", help="also time a static KV cache")
    ap.add_argument("--model", help="a causal-LM folder (default: smollm2, converted once into the cache)")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.models.registry import resolve_base_model
    from tuneforge.settings import Settings
    from tuneforge.tasks import get_task
    from tuneforge.tasks.generation.collate import left_pad, pad_token_id
    from tuneforge.tasks.generation.template import end_of_turn_ids, render_prompt

    path = Path(args.model) if args.model else resolve_base_model("smollm2", Settings().cache_dir).path
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    bf16_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.bfloat16).eval()
    task = get_task("generation")
    convs = prompts(8)
    examples = [{"messages": c} for c in convs]
    ids = [render_prompt(tok, c) for c in convs]
    eos = sorted(end_of_turn_ids(tok, model.generation_config))
    pad = pad_token_id(tok)
    new = args.new_tokens

    def plain(m: Any, batch: list[list[int]], **extra: Any) -> tuple[int, list[str]]:
        enc = left_pad(batch, pad)
        with torch.inference_mode():
            out = m.generate(**enc, max_new_tokens=new, do_sample=False, use_cache=True, eos_token_id=eos,
                             pad_token_id=pad, **extra)
        rows = []
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            end = next((i for i, t in enumerate(row) if t in eos), None)
            rows.append(row if end is None else row[: end + 1])
        return sum(len(r) for r in rows), [tok.decode(r, skip_special_tokens=True).strip() for r in rows]

    def ours(batch_idx: list[int], bf16: bool) -> tuple[int, list[str]]:
        preds = task.predict(model, tok, [examples[i] for i in batch_idx], [], max_length=1024,
                             batch_size=len(batch_idx), bf16=bf16, max_new_tokens=new)
        return sum(p["completion_tokens"] for p in preds), [p["text"] for p in preds]

    def batches(size: int) -> list[list[int]]:
        n = len(ids) if size > 1 else min(args.single, len(ids))
        return [list(range(i, min(i + size, n))) for i in range(0, n, size)]

    variants: dict[str, Callable[[list[int]], tuple[int, list[str]]]] = {
        "plain generate": lambda b: plain(model, [ids[i] for i in b]),
        "tuneforge predict": lambda b: ours(b, False),
        "tuneforge predict, bf16 autocast": lambda b: ours(b, True),
        "plain generate, bf16 weights": lambda b: plain(bf16_model, [ids[i] for i in b]),
    }
    if args.static_cache:
        variants["plain generate, static cache"] = lambda b: plain(model, [ids[i] for i in b],
                                                                   cache_implementation="static")
    rows: list[dict[str, Any]] = []
    texts: dict[tuple[str, int], list[str]] = {}
    for size in (1, 8):
        times: dict[str, list[float]] = {v: [] for v in variants}
        tokens: dict[str, int] = {}
        for rep in range(args.repeats + 1):  # the first round warms up
            for name, fn in variants.items():
                t0 = time.perf_counter()
                n, out = 0, list[str]()
                for b in batches(size):
                    k, o = fn(b)
                    n, out = n + k, out + o
                dt = time.perf_counter() - t0
                if rep:
                    times[name].append(dt)
                tokens[name] = n
                texts[(name, size)] = out
        base = tokens["plain generate"] / statistics.median(times["plain generate"])
        for name in variants:
            tps = tokens[name] / statistics.median(times[name])
            rows.append({"batch": size, "variant": name, "tokens": tokens[name],
                         "seconds": statistics.median(times[name]), "tokens_per_s": tps, "vs_plain": tps / base,
                         "same_text_as_plain": texts[(name, size)] == texts[("plain generate", size)]})
    print_table(rows, ["batch", "variant", "tokens", "seconds", "tokens_per_s", "vs_plain", "same_text_as_plain"])
    path_out = write_result("generation_decode", {
        "model": str(path), "new_tokens": new, "prompts": len(ids), "prompt_tokens": [len(p) for p in ids],
        "single": args.single, "repeats": args.repeats, "machine": machine(), "rows": rows,
        "command": "python bench/generation_decode.py " + " ".join(sys.argv[1:])})
    print(f"wrote {path_out}")


if __name__ == "__main__":
    main()
