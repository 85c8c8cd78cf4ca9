"""The methods comparison of issue 4 on SST-2 and BANKING77 (minilm): full fine-tuning, LoRA, AdaLoRA, IA3,
prompt tuning, bottleneck adapters, zero-shot, SetFit at 8 and 64 examples per class, EDA augmentation, FGM,
distillation and an ensemble: accuracy, wall time, trainable parameters and saved size. Few-shot rows are the mean
and spread over ``--draws`` random draws of the examples; the "seeds" rows, over training seeds. Every row is a
`tuneforge` CLI command (printed), so any number can be reproduced by hand. Writes bench/results/methods.json.

    python bench/methods.py --work runs/bench-methods   # the full table (hours on a 2-core CPU)
    python bench/methods.py --smoke                       # a tiny slice, to check the script end to end (minutes)
    python bench/methods.py --parts trained & python bench/methods.py --parts fewshot   # two halves, one core each
    python bench/methods.py --datasets sst2 --parts seeds   # full and LoRA over seeds 42/1/2 (after trained)
    python bench/methods.py --markdown                    # the table of docs/benchmarks.md from the results file

A row already in bench/results/methods.json whose command is unchanged (the work folder aside) is kept as it
was measured, with the machine it ran on, so a table measured over several sessions resumes where it stopped
(``--fresh`` runs every row again); each SetFit draw is kept the same way. With ``--work`` the run folders are
kept too, and a rerun there also reuses runs that finished but were not yet recorded. SetFit trains on at most
1,000 pairs per draw (fewer iterations, and
``--setfit-max-pairs``: BANKING77 has 77 classes, and 64 per class would otherwise be 100,000 pairs).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, print_table, shared_datasets, tuneforge, write_jsonl, write_result  # noqa: E402


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _per_class(rows: list[dict[str, Any]], k: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r)
    out = [r for lab in sorted(by) for r in rng.sample(by[lab], min(k, len(by[lab])))]
    rng.shuffle(out)
    return out


@functools.cache
def _here() -> dict[str, Any]:
    """Where a row is measured (rows kept from an earlier run keep theirs)."""
    return {k: v for k, v in machine().items() if k in ("cpu_model", "bf16", "torch_threads")}


def _key(cmd: list[str], work: Path) -> str:
    """A command with the work folder left out: equal keys mean the same run, whichever folder it ran in."""
    return " ".join(cmd).replace(str(work), "WORK")


def _cmd(args: list[str], out: Path, eval_file: Path) -> list[str]:
    return ["train", "--task", "classification", "--eval-data", str(eval_file), "--output", str(out), "--overwrite",
            *args]


def _run(name: str, args: list[str], out: Path, work: Path, eval_file: Path,
         earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one `tuneforge train` command, or reuse it: from ``work`` when it finished there, or, when the run
    folder is not needed again, from ``earlier`` (its row in an earlier results file, same command)."""
    cmd = _cmd(args, out, eval_file)
    key = _key(cmd, work)
    if earlier is not None and earlier.get("key") == key:
        return {k: earlier[k] for k in ("accuracy", "wall_s", "trainable_parameters", "parameters", "saved_mb",
                                        "command", "key", "machine") if k in earlier}
    done = work / f"{name}.done.json"
    if done.exists() and (out / "tuneforge.json").exists() and json.loads(done.read_text())["cmd"] == cmd:
        wall = float(json.loads(done.read_text())["wall_s"])  # finished before: reuse it
    else:
        wall = tuneforge(*cmd, log=work / f"{name}.log")
        done.write_text(json.dumps({"cmd": cmd, "wall_s": wall}))
    man = json.loads((out / "tuneforge.json").read_text())
    tr = man["training"]
    return {"accuracy": man["metrics"]["dev"]["accuracy"], "wall_s": round(wall, 1),
            "trainable_parameters": tr["trainable_parameters"], "parameters": tr["parameters"],
            "saved_mb": round((tr.get("saved_bytes") or 0) / 1e6, 2), "command": "tuneforge " + " ".join(cmd),
            "key": key, "machine": _here()}


def _mean_spread(runs: list[dict[str, Any]]) -> dict[str, Any]:
    accs = [r["accuracy"] for r in runs]
    return {**runs[0], "draw_runs": runs, "accuracy": round(statistics.mean(accs), 4),
            "accuracy_sd": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
            "accuracy_min": min(accs), "accuracy_max": max(accs), "draws": len(accs),
            "wall_s": round(statistics.mean(r["wall_s"] for r in runs), 1)}


MAX_PAIRS = 1000
PARTS = frozenset({"trained", "fewshot", "seeds"})
#: seeds of the "seeds" part: full fine-tuning and LoRA again with other seeds (42 is the CLI's default, so its
#: runs are the table's own "full" and "lora" rows): one seed's accuracy moves by a point on SST-2
SEEDS = (42, 1, 2)


def setfit_iterations(n_examples: int, max_pairs: int = MAX_PAIRS) -> int:
    """Pair iterations for SetFit (it draws 2 pairs per example per iteration): 10, fewer for large draws (a
    draw of 64 per class on SST-2 trains on 768 pairs instead of 2,560: mpnet on this CPU takes minutes per
    hundred steps). Where even one iteration is more (BANKING77: 2 x 77 x 64), ``--setfit-max-pairs`` cuts it."""
    return max(1, min(10, max_pairs // (2 * n_examples)))


def bench_dataset(name: str, train_rows: list[dict[str, Any]], eval_file: Path, work: Path, *, n_train: int,
                  epochs: str, draws: int, shots: list[int], extra_unlabeled: int,
                  on_row: Any = None, large_draws: int | None = None,
                  earlier: dict[str, dict[str, Any]] | None = None,
                  parts: frozenset[str] = PARTS) -> list[dict[str, Any]]:
    """The table's rows for one dataset. ``earlier``: rows of an earlier results file by method; a row whose
    command is unchanged is kept as it was measured instead of run again (so a table measured over several
    sessions, or on several machines, resumes), unless a later row needs its run folder. ``parts``: "trained"
    (every row but SetFit's), "fewshot" (the SetFit rows), "seeds" (full and LoRA over ``SEEDS``)."""
    earlier = earlier or {}
    base = ["--base-model", "minilm"]
    train_file = write_jsonl(work / f"{name}-train.jsonl", train_rows[:n_train])
    common = ["--data", str(train_file), *base, "--epochs", epochs]
    rows: list[dict[str, Any]] = []

    def add(method: str, args: list[str], label: str | None = None, *, folder: bool = False) -> dict[str, Any]:
        label = label or method
        out = work / f"{name}-{label}"
        reuse = None if folder and not (out / "tuneforge.json").exists() else earlier.get(label)
        r = _run(f"{name}-{label}", args, out, work, eval_file, reuse)
        rows.append({"dataset": name, "method": label, **r})
        print(f"  {name} {label}: {r['accuracy']:.4f} in {r['wall_s']:.0f}s", flush=True)
        if on_row:
            on_row(rows)
        return r

    unl = write_jsonl(work / f"{name}-unlabeled.jsonl",
                 [{"text": r["text"]} for r in train_rows[n_train: n_train + extra_unlabeled]])
    if "trained" in parts:
        _trained(name, common, base, train_file, eval_file, work, earlier, add, rows, unl)
    if "seeds" in parts:
        _seeds(name, common, eval_file, work, earlier, rows, on_row)
    if "fewshot" in parts:
        _fewshot(name, train_rows, base, eval_file, work, earlier, shots, draws, large_draws, rows, on_row)
        if TEACHER_SHOTS in shots:
            _distill_from_setfit(name, common, eval_file, work, earlier, add, unl)
    return rows


def _trained(name: str, common: list[str], base: list[str], train_file: Path, eval_file: Path, work: Path,
             earlier: dict[str, dict[str, Any]], add: Any, rows: list[dict[str, Any]], unl: Path) -> None:
    # the ensemble averages the full and LoRA runs: their folders are needed unless its row is kept
    ens_kept = "ensemble(full+lora)" in earlier and "full+distill(ensemble)" in earlier and all(
        earlier.get(m, {}).get("key") == _key(_cmd(a, work / f"{name}-{m}", eval_file), work)
        for m, a in (("full", common), ("lora", [*common, "--method", "lora"])))
    add("full", common, folder=not ens_kept)
    for m in ("lora", "adalora", "ia3", "prompt_tuning", "adapter"):
        add(m, [*common, "--method", m], folder=m == "lora" and not ens_kept)
    add("eda", [*common, "--augment", "eda"], "full+eda")
    add("fgm", [*common, "--adversarial", "fgm"], "full+fgm")
    add("zeroshot", ["--data", str(train_file), *base, "--method", "zeroshot"], "zeroshot")
    # ensemble of the full run and the LoRA run, evaluated on the same dev file
    ens = work / f"{name}-ensemble"
    if ens_kept:
        rows.append(earlier["ensemble(full+lora)"])
    else:
        if (ens / "tuneforge.json").exists() and (work / f"{name}-ensemble.done.json").exists():
            wall = json.loads((work / f"{name}-ensemble.done.json").read_text())["wall_s"]
        else:
            wall = tuneforge("ensemble", str(work / f"{name}-full"), str(work / f"{name}-lora"), "--output",
                             str(ens), "--overwrite", "--eval-data", str(eval_file), log=work / f"{name}-ensemble.log")
            (work / f"{name}-ensemble.done.json").write_text(json.dumps({"wall_s": wall}))
        acc = json.loads(next(ens.glob("eval-*/metrics.json")).read_text())["accuracy"]
        man = json.loads((ens / "tuneforge.json").read_text())
        rows.append({"dataset": name, "method": "ensemble(full+lora)", "accuracy": acc, "wall_s": round(wall, 1),
                     "trainable_parameters": 0, "parameters": man["training"]["parameters"],
                     "saved_mb": round(man["training"]["saved_bytes"] / 1e6, 2),
                     "command": f"tuneforge ensemble {work / f'{name}-full'} {work / f'{name}-lora'} --output {ens}"})
    # distillation: the ensemble teaches a fresh minilm student, on the labelled plus unlabelled text
    add("distill", [*common, "--distill-from", str(ens), "--unlabeled-data", str(unl)], "full+distill(ensemble)")


def _seeds(name: str, common: list[str], eval_file: Path, work: Path, earlier: dict[str, dict[str, Any]],
           rows: list[dict[str, Any]], on_row: Any) -> None:
    """Full fine-tuning and LoRA over ``SEEDS``: mean and spread, as for the few-shot draws. The default seed's
    runs are the "full" and "lora" rows' own commands, so they are reused from the results file."""
    for method, extra in (("full", []), ("lora", ["--method", "lora"])):
        label = f"{method}, seeds {'/'.join(map(str, SEEDS))}"
        kept = earlier.get(label, {}).get("draw_runs", [])
        runs = []
        for i, seed in enumerate(SEEDS):
            default = seed == SEEDS[0]
            out = work / (f"{name}-{method}" if default else f"{name}-{method}-seed{seed}")
            prior = kept[i] if i < len(kept) else earlier.get(method) if default else None
            runs.append(_run(out.name, [*common, *extra, *([] if default else ["--seed", str(seed)])], out, work,
                             eval_file, prior))
            print(f"  {name} {method} seed {seed}: {runs[-1]['accuracy']:.4f}", flush=True)
        rows.append({"dataset": name, "method": label, **_mean_spread(runs), "spread_of": "seeds"})
        if on_row:
            on_row(rows)


TEACHER_SHOTS = 64


def _distill_from_setfit(name: str, common: list[str], eval_file: Path, work: Path,
                         earlier: dict[str, dict[str, Any]], add: Any, unl: Path) -> None:
    """Distillation from a larger model: SetFit's first 64-per-class draw (mpnet, 110M parameters) teaches
    minilm (22M) on the same labelled plus unlabelled text as the ensemble's student. The teacher's run folder
    is needed: where its row was kept from an earlier results file, draw 0 is trained again."""
    teacher = work / f"{name}-setfit{TEACHER_SHOTS}-0"
    label = f"full+distill(setfit{TEACHER_SHOTS})"
    args = [*common, "--distill-from", str(teacher), "--unlabeled-data", str(unl)]
    kept = earlier.get(label, {}).get("key") == _key(_cmd(args, work / f"{name}-{label}", eval_file), work)
    if not kept and not (teacher / "tuneforge.json").exists():
        fs = work / f"{name}-fs{TEACHER_SHOTS}-0.jsonl"
        _run(teacher.name, _setfit_args(fs, ["--base-model", "minilm"], 0, len(_rows(fs))), teacher, work, eval_file)
    add("distill", args, label)


def _setfit_args(fs: Path, base: list[str], seed: int, n_examples: int) -> list[str]:
    """The `tuneforge train` options of one SetFit draw."""
    return ["--data", str(fs), *base, "--method", "setfit", "--seed", str(seed),
            "--setfit-iterations", str(setfit_iterations(n_examples)), "--setfit-max-pairs", str(MAX_PAIRS)]


def _fewshot(name: str, train_rows: list[dict[str, Any]], base: list[str], eval_file: Path, work: Path,
             earlier: dict[str, dict[str, Any]], shots: list[int], draws: int, large_draws: int | None,
             rows: list[dict[str, Any]], on_row: Any) -> None:
    for k in shots:
        runs = []
        earlier_draws = earlier.get(f"setfit {k}/class", {}).get("draw_runs", [])
        for d in range(draws if k <= 8 or large_draws is None else large_draws):
            draw = _per_class(train_rows, k, seed=d)
            fs = write_jsonl(work / f"{name}-fs{k}-{d}.jsonl", draw)
            runs.append(_run(f"{name}-setfit{k}-{d}", _setfit_args(fs, base, d, len(draw)),
                work / f"{name}-setfit{k}-{d}", work, eval_file,
                earlier_draws[d] if d < len(earlier_draws) else None))
            print(f"  {name} setfit {k}/class draw {d}: {runs[-1]['accuracy']:.4f}", flush=True)
            if on_row:  # the draws so far, so that an interrupted table keeps them
                on_row([*rows, {"dataset": name, "method": f"setfit {k}/class", **_mean_spread(runs)}])
        rows.append({"dataset": name, "method": f"setfit {k}/class", **_mean_spread(runs)})
        if on_row:
            on_row(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="a tiny slice: checks the script, not the methods")
    ap.add_argument("--draws", type=int, default=5, help="random draws of the few-shot examples (SST-2)")
    ap.add_argument("--large-draws", type=int, default=None,
                    help="draws for the rows above 8 per class, when fewer than --draws (their runs are longer)")
    ap.add_argument("--banking-draws", type=int, default=2,
                    help="draws on BANKING77, whose SetFit runs take far longer (77 classes)")
    ap.add_argument("--datasets", default="sst2,banking77", help="comma-separated: sst2, banking77 (rows of the "
                    "other dataset already in bench/results/methods.json are kept)")
    ap.add_argument("--sst2-shots", default="8,64", help="examples per class of SST-2's few-shot rows")
    ap.add_argument("--banking-shots", default="8,64", help="examples per class of BANKING77's few-shot rows")
    ap.add_argument("--fresh", action="store_true", help="run every row again (by default a row already in "
                    "bench/results/methods.json with the same command is kept: the table resumes)")
    ap.add_argument("--rerun", default="", help="comma-separated methods (as in the table's method column) to run "
                                                "again even though their command is unchanged: after a change of a "
                                                "method's defaults")
    ap.add_argument("--work", type=Path, default=None, help="keep runs here (default: a temporary folder)")
    ap.add_argument("--parts", default="trained,fewshot", help="comma-separated: trained (every row but "
                    "SetFit's), fewshot (the SetFit rows), seeds (full fine-tuning and LoRA over seeds "
                    f"{'/'.join(map(str, SEEDS))}, after trained); runs with different parts can share the table")
    ap.add_argument("--markdown", action="store_true", help="print the results file as the markdown table of "
                    "docs/benchmarks.md and exit")
    a = ap.parse_args()
    if a.markdown:
        print(markdown(json.loads((RESULTS / "methods.json").read_text())["rows"]))
        return
    parts = frozenset(x for x in a.parts.split(",") if x)
    if not parts or parts - PARTS:
        ap.error(f"--parts takes {', '.join(sorted(PARTS))}, not {a.parts}")
    ds = shared_datasets()
    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x]

    draws, shots = (a.draws, ints(a.sst2_shots)) if not a.smoke else (2, [2])
    banking_shots = ints(a.banking_shots)
    with tempfile.TemporaryDirectory(prefix="bench-methods-") as tmp:
        work = a.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sst_train, sst_dev = _rows(ds / "sst2" / "train.jsonl"), ds / "sst2" / "validation.jsonl"
        b77_train, b77_test = _rows(ds / "banking77" / "train.jsonl"), ds / "banking77" / "test.jsonl"
        if a.smoke:
            sst_dev = write_jsonl(work / "sst2-dev-small.jsonl", _rows(sst_dev)[:40])
            plan = [("sst2", sst_train, sst_dev, 48, "1", 2, shots)]
        else:
            plan = [(n, *p) for n, p in {
                "sst2": (sst_train, sst_dev, 2000, "3", draws, shots),
                "banking77": (b77_train, b77_test, 3000, "8", a.banking_draws, banking_shots)}.items()
                if n in a.datasets.split(",")]
        result = "methods" if not a.smoke else "methods-smoke"
        previous = RESULTS / f"{result}.json"
        names = {p[0] for p in plan}
        before = json.loads(previous.read_text())["rows"] if previous.exists() else []
        rerun = set(a.rerun.split(",")) - {""}
        earlier = {} if a.fresh else {n: {r["method"]: r for r in before if r["dataset"] == n
                                          and r["method"] not in rerun} for n in names}
        done: list[dict[str, Any]] = []
        here = machine()

        def save(partial: list[dict[str, Any]]) -> Path:
            for r in partial:  # rows kept from an earlier run keep the machine they were measured on
                r.setdefault("machine", _here())
            return _merge(previous, {"machine": here, "smoke": a.smoke}, done + partial)

        for name, tr, ev, n, ep, dr, sh in plan:
            random.Random(0).shuffle(tr)
            done += bench_dataset(name, tr, ev, work, n_train=n, epochs=ep, draws=dr, shots=sh,
                                  extra_unlabeled=200 if a.smoke else 5000, on_row=save, large_draws=a.large_draws,
                                  earlier=earlier.get(name), parts=parts)
    save([])
    cols = ["dataset", "method", "accuracy", "accuracy_sd", "wall_s", "trainable_parameters", "saved_mb"]
    print_table(json.loads(previous.read_text())["rows"], cols)
    print(f"wrote {previous}")


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table of docs/benchmarks.md from the results file's rows (``--markdown``); † marks rows measured on
    one thread (beside another job)."""
    out = ["| dataset | method | accuracy | spread (sd; min–max) | wall time | trainable parameters | saved |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        ds = r["dataset"] + (" †" if r.get("machine", {}).get("torch_threads") == 1 else "")
        spread = ""
        if "draws" in r:
            n = r["draws"]
            what = r.get("spread_of", "draws")
            spread = (f"±{r['accuracy_sd']:.3f}; {r['accuracy_min']:.3f}–{r['accuracy_max']:.3f} "
                      f"({n} {what if n > 1 else what[:-1]})")
        tr, total = r.get("trainable_parameters", 0), r.get("parameters", 0)
        if r["method"] == "zeroshot":
            trainable = "0 (no training)"
        elif r["method"].startswith("ensemble"):
            trainable = "0 (averages trained models)"
        else:
            trainable = f"{tr:,} ({100 * tr / max(total, 1):.2f}%)"
        out.append(f"| {ds} | {r['method']} | {r['accuracy']:.3f} | {spread} | {r['wall_s']:.0f} s | {trainable} "
                   f"| {r.get('saved_mb', 0):.1f} MB |")
    return "\n".join(out)


def _merge(path: Path, head: dict[str, Any], ours: list[dict[str, Any]]) -> Path:
    """Write ``ours`` into the results file, replacing the rows of the same dataset and method and keeping the
    others as they are in the file now, under a lock: two runs (``--parts trained`` and ``--parts fewshot``, one
    core each) can fill one table at once."""
    import fcntl

    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = json.loads(path.read_text())["rows"] if path.exists() else []
        mine = {(r["dataset"], r["method"]): r for r in ours}
        rows = [mine.pop((r["dataset"], r["method"]), r) for r in now]
        return write_result(path.stem, {**head, "rows": rows + list(mine.values())})


if __name__ == "__main__":
    main()
