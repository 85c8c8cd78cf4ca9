"""A federated fine-tuning run, read top to bottom: check the output folder, read the silos (one file per client,
or one file split IID or by Dirichlet label skew) and :func:`~tuneforge.training.setup.prepare` the run on their
union as ``train --method lora`` would (labels, tokenizer, features), simulate the clients with Flower (a
``ServerApp`` and a ``ClientApp`` under ``flwr.simulation.run_simulation``, Ray underneath), score the global
model on the server's dev file after every round, and finish an ordinary run folder (adapter, head, tokenizer,
dev report, manifest with a ``federated`` section) through :func:`tuneforge.runs.finalize_run`.

Only the LoRA matrices and the task head travel; the base model is loaded by every client from its own copy.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tuneforge import runs
from tuneforge.data import Dataset
from tuneforge.errors import ConfigError, RunError
from tuneforge.evaluation.card import write_card
from tuneforge.settings import Settings
from tuneforge.training.federated.client import ClientSpec, build_model
from tuneforge.training.federated.config import DATA_SUFFIXES, FederatedConfig
from tuneforge.training.federated.split import label_skew, split_indices
from tuneforge.training.federated.weights import full_model_bytes, get_trainable, payload_bytes, set_trainable
from tuneforge.training.setup import Prepared, prepare

__all__ = ["FederatedResult", "RoundsRunner", "Session", "Silos", "client_spec", "federated_train",
           "finish_session", "prepare_federated", "round_log", "silo_label", "simulate", "start_session"]


@dataclass
class FederatedResult:
    output: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any] | None


@dataclass
class Silos:
    """The prepared run (on the union of the silos) and each silo's example indices into it."""

    prepared: Prepared
    indices: list[list[int]]
    names: list[str]
    #: per silo: path, examples, sha256 (a --data-dir), else the split that made them
    sources: list[dict[str, Any]]

    def features(self, silo: int) -> list[dict[str, Any]]:
        keep = set(self.indices[silo])
        enc = self.prepared.train_enc
        return [f for f, ex in zip(enc.features, enc.example_index, strict=True) if ex in keep]

    def labels(self, silo: int) -> list[str]:
        ex = self.prepared.train_ds.examples
        return [silo_label(ex[i]) for i in self.indices[silo]]


def silo_label(example: dict[str, Any]) -> str:
    """The label a split stratifies by (a multi-label example: its labels joined)."""
    lab = example.get("label")
    return "|".join(sorted(lab)) if isinstance(lab, list) else str(lab)


def _train_config(fc: FederatedConfig, data: Path) -> Any:
    from tuneforge.training.config import make_config

    values: dict[str, Any] = {"task": fc.task, "data": str(data), "eval_data": fc.eval_data, "output": fc.output,
                              "base_model": fc.base_model, "method": "lora", "epochs": fc.epochs,
                              "learning_rate": fc.learning_rate, "batch_size": fc.batch_size,
                              "max_length": fc.max_length, "lora_r": fc.lora_r, "seed": fc.seed,
                              "warmup_ratio": 0.0, "lr_scheduler": "constant"}
    return make_config({k: v for k, v in values.items() if v is not None}, "the federated options")


def _silo_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"data_dir: {folder} is not a folder", hint="Give a folder holding one data file per client.")
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in DATA_SUFFIXES)
    if len(files) < 2:
        raise ConfigError(f"data_dir: {folder} holds {len(files)} data files ({', '.join(DATA_SUFFIXES)}); "
                          "federated training needs one per client, at least 2")
    return files


@contextmanager
def _union_file(fc: FederatedConfig) -> Iterator[tuple[Path, list[int], list[dict[str, Any]]]]:
    """The file the run is prepared on: ``--data`` itself, or the silos of ``--data-dir`` read by the task's
    reader (every problem in every file reported at once) and written as one JSONL; with how many examples each
    silo holds (none for ``--data``) and their fingerprints."""
    from tuneforge.errors import DataError
    from tuneforge.tasks import load_dataset

    if fc.data is not None:
        yield fc.data, [], []
        return
    assert fc.data_dir is not None
    problems, sets = [], []
    for f in _silo_files(fc.data_dir):
        try:
            sets.append(load_dataset(f, fc.task, require_labels=True))
        except DataError as e:
            problems += e.problems
    if problems:
        raise DataError(problems, hint="Fix these lines in the silo files and run the command again.")
    with tempfile.TemporaryDirectory(prefix="tuneforge-silos-") as tmp:
        union = Path(tmp) / "union.jsonl"
        with union.open("w", encoding="utf-8") as out:
            for ds in sets:
                for ex in ds.examples:
                    out.write(json.dumps({k: v for k, v in ex.items() if v is not None}, ensure_ascii=False) + "\n")
        yield union, [len(ds) for ds in sets], [_fingerprint(ds) for ds in sets]


def _fingerprint(ds: Dataset) -> dict[str, Any]:
    return {"path": str(ds.path), "format": ds.format, "examples": len(ds), "sha256": ds.fingerprint}


def prepare_federated(fc: FederatedConfig, settings: Settings, console: Console) -> Silos:
    """The run prepared on the union of the silos, and the silos; raises before anything is written."""
    from tuneforge.tasks import get_task

    task = get_task(fc.task)
    if not task.sequence_level or task.generative:
        raise ConfigError(f"task: federated fine-tuning trains one label per text (classification); {fc.task} is "
                          "not supported", hint="Use --task classification.")
    with _union_file(fc) as (data, sizes, sources):
        p = prepare(_train_config(fc, data), settings, console)
    if fc.data_dir is not None:
        if len(p.train_ds) != sum(sizes):  # the silos are cut from the union by position
            raise RunError(f"data_dir: the silos hold {sum(sizes)} examples but their union read back as "
                           f"{len(p.train_ds)}", hint="Check the silo files with `tuneforge data check`.")
        bounds = np.cumsum([0, *sizes])
        indices = [list(range(int(a), int(b))) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        names = [Path(s["path"]).stem for s in sources]
        p.train_ds.path = str(fc.data_dir)
        p.train_ds.fingerprint = _combined([s["sha256"] for s in sources])
        p.config = p.config.model_copy(update={"data": fc.data_dir})
    else:
        assert fc.clients is not None
        labels = [silo_label(ex) for ex in p.train_ds.examples]
        indices = split_indices(labels, fc.split_spec, fc.clients, seed=fc.seed)
        names = [f"client-{i}" for i in range(len(indices))]
        sources = [{"split": str(fc.split_spec), "examples": len(ix)} for ix in indices]
    if fc.clients_per_round is not None and fc.clients_per_round > len(indices):
        raise ConfigError(f"clients_per_round: {fc.clients_per_round} is more than the {len(indices)} silos")
    return Silos(p, indices, names, sources)


def _combined(hashes: list[str]) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256("".join(hashes).encode()).hexdigest()


def _check_output(out: Path, *, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = "a trained model" if runs.has_manifest(out) else "other files"
        raise RunError(f"{out} already exists and holds {what}.",
                       hint="Choose another --output, or pass --overwrite to replace it.")


#: runs the rounds: (config, client spec, number of clients, initial tensors, the server's evaluation, the
#: per-round callback) -> the final global tensors
RoundsRunner = Callable[[FederatedConfig, ClientSpec, int, dict[str, np.ndarray],
                         Callable[[int, dict[str, np.ndarray]], dict[str, float]], Callable[[Any], None]],
                        dict[str, np.ndarray]]


def client_spec(silos: Silos, *, threads: int = 1) -> ClientSpec:
    """What every client needs (picklable): the prepared run's model, labels, config and the silos' features;
    the local learning rate as ``train --method lora`` resolves it."""
    p = silos.prepared
    assert p.method is not None
    lr = p.hp["learning_rate"] * (p.method.lr_scale if p.config.learning_rate is None else 1.0)
    return ClientSpec(base_path=str(p.base.path), task=p.task.name, labels=p.labels, multi_label=p.multi_label,
                      config=p.config.to_json(), learning_rate=lr, batch_size=p.hp["batch_size"],
                      silos=[silos.features(i) for i in range(len(silos.indices))], threads=threads)


@dataclass
class Session:
    """A federated run between its setup and its run folder: the silos, what the clients get, the server's model
    (evaluated after every round, saved at the end) and the round records so far."""

    fc: FederatedConfig
    silos: Silos
    spec: ClientSpec
    model: Any
    initial: dict[str, np.ndarray]
    skew: dict[str, float]
    clients_per_round: int
    t_start: float
    console: Console
    records: list[dict[str, Any]]
    on_event: Callable[[dict[str, Any]], None] | None = None
    mode: str = "simulation"

    @property
    def n(self) -> int:
        return len(self.silos.indices)

    def evaluate(self, server_round: int, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        """The global metric after a round: the global model scored on the server's dev file (none without one;
        the round's record keeps the clients' mean training loss)."""
        from tuneforge.training.dev_eval import dev_predictions

        p = self.silos.prepared
        if p.eval_ds is None or p.eval_enc is None:
            return {}
        set_trainable(self.model, arrays)
        self.model.eval()
        preds = dev_predictions(p, self.model, batch_size=p.config.eval_batch_size, bf16=False)
        scores = p.task.score(preds, p.eval_ds.examples, p.labels, multi_label=p.multi_label)
        return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float)) and k != "n"}


def start_session(fc: FederatedConfig, *, settings: Settings | None = None, console: Console | None = None,
                  overwrite: bool = False, threads: int = 1,
                  on_event: Callable[[dict[str, Any]], None] | None = None) -> Session:
    """Check the output folder, prepare the silos, build the server's model; prints what the run will do.
    Nothing is written."""
    console = console or Console(stderr=True)
    _check_output(Path(fc.output), overwrite=overwrite)
    t_start = time.time()
    silos = prepare_federated(fc, settings or Settings(), console)
    p = silos.prepared
    c = p.config
    n = len(silos.indices)
    k = fc.clients_per_round or n
    spec = client_spec(silos, threads=threads)
    model, _, _ = build_model(spec)
    initial = get_trainable(model)
    skew = label_skew([silos.labels(i) for i in range(n)])
    payload, full = payload_bytes(initial), full_model_bytes(model)
    console.print(f"Federated LoRA: [bold]{p.base.name}[/] for {c.task}, {n} clients "
                  f"({', '.join(str(len(i)) for i in silos.indices)} examples), {k} per round, {fc.rounds} rounds "
                  f"of {c.epochs:g} local epoch(s), {fc.strategy}"
                  + (f" (mu {fc.mu:g})" if fc.strategy == "fedprox" else "")
                  + (f", DP noise {fc.dp_noise_multiplier:g} clip {fc.dp_clipping_norm:g}" if fc.dp else "")
                  + f"; label skew (mean TV distance) {skew['mean_tv_distance']:.3f}")
    console.print(f"Each client exchanges {_mb(payload)} per direction per round (adapters + head), against "
                  f"{_mb(full)} for the whole model ({full / max(1, payload):.0f}x less).")
    return Session(fc, silos, spec, model, initial, skew, k, t_start, console, [], on_event)


@contextmanager
def round_log(session: Session) -> Iterator[Callable[[Any], None]]:
    """The per-round callback (a Rich progress bar, a line per round, the event, the record kept)."""
    with _round_progress(session.console, session.fc.rounds, session.silos.prepared.task.main_metric) as show:
        def on_round(rec: Any) -> None:
            session.records.append(rec.to_json())
            show(rec)
            if session.on_event is not None:
                session.on_event({"type": "federated_round", **rec.to_json(), "total_rounds": session.fc.rounds})

        yield on_round


def finish_session(session: Session, arrays: dict[str, np.ndarray], *, train_seconds: float,
                   overwrite: bool = False, extra: dict[str, Any] | None = None) -> FederatedResult:
    """The final global adapter and head into the server's model, the dev report, the run folder."""
    p = session.silos.prepared
    out = Path(session.fc.output)
    model = session.model
    set_trainable(model, arrays)
    model.eval()
    _empty_output(out, overwrite)
    metrics = None
    if p.eval_ds is not None and p.eval_enc is not None:
        from tuneforge.training.dev_eval import dev_predictions, write_dev_report

        preds = dev_predictions(p, model, batch_size=p.config.eval_batch_size, bf16=False)
        metrics = write_dev_report(p, out, preds)
    manifest = _manifest(session, out, metrics, train_seconds=train_seconds)
    manifest["federated"].update(extra or {})
    assert p.method is not None
    _finalize(model, p.tokenizer, out, manifest, p.method)
    _print_summary(session.console, manifest["federated"])
    return FederatedResult(out, manifest, metrics)


def federated_train(fc: FederatedConfig, *, settings: Settings | None = None, overwrite: bool = False,
                    console: Console | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
                    runner: RoundsRunner | None = None) -> FederatedResult:
    """Fine-tune LoRA adapters (and the task head) across silos with Flower; writes an ordinary run folder.

    ``runner`` runs the rounds; by default a Flower simulation (:func:`simulate`, Ray actors as the clients)."""
    cpus = fc.simulation_cpus or os.cpu_count() or 1
    k = fc.clients_per_round or (fc.clients or 2)
    actors = max(1, min(k, cpus))
    s = start_session(fc, settings=settings, console=console, overwrite=overwrite, threads=max(1, cpus // actors),
                      on_event=on_event)
    with round_log(s) as on_round:
        t_sim = time.time()
        if runner is None:
            arrays = simulate(fc, s.spec, s.n, s.initial, s.evaluate, on_round, cpus=cpus,
                              actors=max(1, min(s.clients_per_round, cpus)))
        else:
            arrays = runner(fc, s.spec, s.n, s.initial, s.evaluate, on_round)
        t_sim = time.time() - t_sim
    return finish_session(s, arrays, train_seconds=t_sim, overwrite=overwrite)


def _empty_output(out: Path, overwrite: bool) -> None:
    """The output folder, emptied when ``overwrite``, before anything of the run is written into it."""
    from tuneforge.utils.fs import storage_errors

    with storage_errors(out):
        if overwrite and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@contextmanager
def _round_progress(console: Console, rounds: int, main_metric: str) -> Iterator[Callable[[Any], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]Federated rounds[/]"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console, transient=False)
    task_id = progress.add_task("rounds", total=rounds, info="")

    def show(rec: Any) -> None:
        shown = rec.metrics.get(main_metric)
        parts = [f"round {rec.round}/{rounds}" if rec.round else "before round 1"]
        if rec.train_loss is not None:
            parts.append(f"client loss {rec.train_loss:.4f}")
        if rec.failed:
            parts.append(f"[yellow]{rec.failed} client(s) failed: {rec.failure}[/]")
        if shown is not None:
            parts.append(f"global {main_metric} {shown:.4f}")
        line = "  ".join(parts)
        progress.update(task_id, completed=rec.round, info=line)
        if len(parts) > 1:  # before round 1 without a dev file there is nothing to say
            progress.console.print(f"[cyan]federated[/] {line}")

    with progress:
        yield show


@contextmanager
def _quiet_flower() -> Iterator[None]:
    """Flower's log (a dozen lines per round, and a deprecation notice for the simulation's Python entry point)
    is replaced by the progress bar; errors still show."""
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def simulate(fc: FederatedConfig, spec: ClientSpec, n: int, initial: dict[str, np.ndarray],
              evaluate: Callable[[int, dict[str, np.ndarray]], dict[str, float]], on_round: Callable[[Any], None],
              *, cpus: int, actors: int) -> dict[str, np.ndarray]:
    """Run the rounds as a Flower simulation (Ray actors as the clients); the final global tensors."""
    from flwr.simulation import run_simulation

    from tuneforge.training.federated.client import make_client_app
    from tuneforge.training.federated.server import ServerRun, make_server_app

    result = ServerRun()
    with _quiet_flower():
        server_app = make_server_app(fc, n_clients=n, initial=initial, evaluate=evaluate, on_round=on_round,
                                     result=result)
    gpus = _gpus()
    # the cluster RAY_ADDRESS names, else a Ray of this process's own ("local"): never one that happens to be running
    # on the machine (ray.init's default would attach to the last `ray start` here, or to a killed run's leftovers)
    address = os.environ.get("RAY_ADDRESS") or "local"
    init_args: dict[str, Any] = {"address": address, "include_dashboard": False, "logging_level": logging.ERROR}
    if address == "local":
        init_args.update(num_cpus=cpus, num_gpus=gpus)
    backend = {"client_resources": {"num_cpus": max(1, cpus // actors), "num_gpus": gpus / actors if gpus else 0.0},
               "init_args": init_args}
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # Ray's coming default; silences its notice
    # Ray kills its workers when the whole machine's memory passes 95%, whoever holds it (a browser, another
    # training run); the clients need little, so only a nearly full machine stops them
    os.environ.setdefault("RAY_memory_usage_threshold", "0.99")
    with _quiet_flower():
        run_simulation(server_app=server_app, client_app=make_client_app(spec, dp=fc.dp), num_supernodes=n,
                       backend_name="ray", backend_config=backend)  # type: ignore[arg-type]
    if result.error is not None:
        if isinstance(result.error, (RunError, ConfigError)):
            raise result.error
        raise RunError(f"the federated simulation failed: {result.error}",
                       hint="See the message above; a client's error is reported with its round.") from result.error
    if not result.arrays:
        raise RunError("the federated simulation ended without a global model (no round completed)",
                       hint="Check the Flower messages above, then run the command again.")
    return result.arrays


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _manifest(session: Session, out: Path, metrics: dict[str, Any] | None, *,
              train_seconds: float) -> dict[str, Any]:
    from tuneforge.methods import parameter_report
    from tuneforge.training.manifest import build_manifest, training_summary

    fc, silos, records, k = session.fc, session.silos, session.records, session.clients_per_round
    payload, full = payload_bytes(session.initial), full_model_bytes(session.model)
    p = silos.prepared
    manifest = build_manifest(p, out, False, metrics)
    manifest["resolved"]["encoder_learning_rate"] = session.spec.learning_rate
    rounds = [r for r in records if r["round"] > 0]
    seen = sum(r["examples"] for r in rounds) * float(p.config.epochs)
    wall = time.time() - session.t_start
    manifest["training"] = training_summary(
        steps=sum(r["steps"] for r in rounds), epochs=round(fc.rounds * float(p.config.epochs), 3),
        train_seconds=train_seconds, examples_per_second=seen / max(1e-9, train_seconds), wall_seconds=wall,
        final_loss=rounds[-1]["train_loss"] if rounds else None, best_step=None, stopped_early=False,
        **parameter_report(session.model))
    manifest["federated"] = {
        "framework": _flower_version(),
        "mode": session.mode,
        "options": fc.to_json(),
        "rounds": fc.rounds,
        "clients": len(silos.indices),
        "clients_per_round": k,
        "strategy": fc.strategy,
        **({"proximal_mu": fc.mu} if fc.strategy == "fedprox" else {}),
        "local_epochs": float(p.config.epochs),
        "split": str(fc.split_spec) if fc.data is not None else "silos",
        "silos": [{"name": name, **src, "examples": len(ix)} for name, src, ix in
                  zip(silos.names, silos.sources, silos.indices, strict=True)],
        "label_skew": session.skew,
        "dp": ({"mechanism": "client-side fixed clipping + Gaussian noise on the aggregate (Flower)",
                "noise_multiplier": fc.dp_noise_multiplier, "clipping_norm": fc.dp_clipping_norm,
                "epsilon": None, "note": "the spent epsilon is not accounted (Flower's accountant needs the "
                                         "dp-accounting package)"} if fc.dp else None),
        "exchanged": "LoRA adapters + task head (the base model is never sent)",
        "bytes_per_round": {"adapters_and_head_per_client": payload, "full_model_per_client": full,
                            "adapters_and_head_total": 2 * k * payload, "full_model_total": 2 * k * full,
                            "reduction": round(full / max(1, payload), 1)},
        "per_round": records,
    }
    return manifest


def _flower_version() -> str:
    import flwr

    return f"flwr {flwr.__version__}"


def _finalize(model: Any, tokenizer: Any, out: Path, manifest: dict[str, Any], method: Any) -> None:
    """The adapter and head (the method's way) and the tokenizer into the folder, then the manifest, last."""

    def write_files(staging: Path) -> dict[str, Any]:
        saved: dict[str, Any] = method.save(model, staging)
        manifest["training"]["saved_bytes"] = saved.get("saved_bytes")
        tokenizer.save_pretrained(str(staging))
        # the model card, as every run folder has one (over the README.md peft writes)
        write_card(out, {**manifest, "method_info": {**manifest.get("method_info", {}), **saved}}, dest=staging)
        return saved

    runs.finalize_run(out, manifest, write_files, keep_checkpoints=False)


def _print_summary(console: Console, fed: dict[str, Any]) -> None:
    from rich.table import Table

    b = fed["bytes_per_round"]
    table = Table(title="Bytes exchanged per round")
    table.add_column("what")
    table.add_column("per client, each way", justify="right")
    table.add_column(f"round total ({fed['clients_per_round']} clients, both ways)", justify="right")
    table.add_row("adapters + head (sent)", _mb(b["adapters_and_head_per_client"]), _mb(b["adapters_and_head_total"]))
    table.add_row("full model (not sent)", _mb(b["full_model_per_client"]), _mb(b["full_model_total"]))
    console.print(table)
