"""Federated fine-tuning as real Flower processes: one server and one process per client, talking gRPC.

    python -m tuneforge.training.federated.process server --address 0.0.0.0:8080 --data-dir SILOS/ \\
        --rounds 10 --output runs/fed [--eval-data DEV] [--base-model minilm ...]
    python -m tuneforge.training.federated.process client --address SERVER:8080 --data-dir SILOS/ --silo bank-a \\
        [--base-model minilm ...]    # on each client machine, one per silo

The same local training (:func:`~tuneforge.training.federated.client.local_fit`) and run folder
(:func:`~tuneforge.training.federated.run.finish_session`) as ``tuneforge federated``; the transport is Flower's
gRPC server and client (``flwr.server.start_server`` / ``flwr.client.start_client``, Flower's long-standing
deployment entry points, deprecated in favour of SuperLink/SuperNode and ``flwr run``, which need a packaged
Flower App). The aggregation is Flower's FedAvg or FedProx strategy.

What travels: the server sends the client its setup once (base model name, label space, learning rate, batch
size, max length: JSON in the first round's config) and the global adapter and head every round; a client
reads its own silo only (``--silo``: a file name in ``--data-dir`` without its suffix, e.g. ``bank-a``), and
returns its adapter, head and example count. The server reads ``--data-dir`` to fix the label space and the
run record (the label space of all silos; a deployment whose server must not see the silos gives it one file
holding each label once). DP is available in the simulation (``tuneforge federated --dp-*``) only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "run_client", "run_server"]


def _common(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--address", required=True, help="host:port of the server")
    ap.add_argument("--data-dir", type=Path, required=True, help="the silos folder (one data file per client)")
    ap.add_argument("--task", default="classification")
    ap.add_argument("--base-model", default="minilm")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--epochs", type=float, default=1.0, help="local epochs per round")
    ap.add_argument("--seed", type=int, default=42)


def _config(args: argparse.Namespace, **extra: Any) -> Any:
    from tuneforge.training.federated.config import make_federated_config

    return make_federated_config({"task": args.task, "data_dir": args.data_dir, "base_model": args.base_model,
                                  "batch_size": args.batch_size, "learning_rate": args.lr, "epochs": args.epochs,
                                  "seed": args.seed, **extra})


def run_server(args: argparse.Namespace) -> int:
    """Serve ``--rounds`` rounds to the clients that connect, then write the run folder."""
    from flwr.common import ndarrays_to_parameters
    from flwr.server import ServerConfig, start_server
    from flwr.server.strategy import FedAvg, FedProx
    from rich.console import Console

    from tuneforge.training.federated.run import finish_session, round_log, start_session
    from tuneforge.training.federated.server import RoundRecord

    fc = _config(args, output=args.output, rounds=args.rounds, eval_data=args.eval_data, strategy=args.strategy)
    console = Console(stderr=True)
    session = start_session(fc, console=console, overwrite=args.overwrite)
    session.mode = "processes"
    names = list(session.initial)
    setup = json.dumps({"base_model": str(session.spec.base_path), "labels": session.spec.labels,
                        "multi_label": session.spec.multi_label, "config": session.spec.config,
                        "learning_rate": session.spec.learning_rate, "batch_size": session.spec.batch_size,
                        "max_length": session.silos.prepared.hp["max_length"], "names": names})
    state: dict[str, Any] = {"arrays": dict(session.initial), "pending": None}

    def fit_config(server_round: int) -> dict[str, Any]:
        return {"server-round": server_round, "setup": setup}

    def fit_metrics(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        sizes = [n for n, _ in results]
        state["pending"] = RoundRecord(0, clients=len(results), examples=sum(sizes),
                                       steps=int(sum(int(m["steps"]) for _, m in results)),
                                       train_loss=float(np.average([float(m["train_loss"]) for _, m in results],
                                                                   weights=sizes)))
        return {}

    with round_log(session) as on_round:
        def evaluate(server_round: int, ndarrays: list[np.ndarray], config: dict[str, Any]) -> Any:
            arrays = dict(zip(names, ndarrays, strict=True))
            state["arrays"] = arrays
            rec = state["pending"] if server_round > 0 and state["pending"] is not None else RoundRecord(0)
            rec.round = server_round
            if server_round > 0:
                payload = int(sum(a.nbytes for a in ndarrays))
                rec.bytes_down = rec.bytes_up = payload * rec.clients
            rec.metrics = session.evaluate(server_round, arrays)
            on_round(rec)
            state["pending"] = None
            return 0.0, rec.metrics

        n = session.n
        common: dict[str, Any] = dict(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n,
                                      min_evaluate_clients=0, min_available_clients=n, evaluate_fn=evaluate,
                                      on_fit_config_fn=fit_config, accept_failures=False,
                                      initial_parameters=ndarrays_to_parameters(list(session.initial.values())),
                                      fit_metrics_aggregation_fn=fit_metrics)
        strategy = FedProx(proximal_mu=fc.mu, **common) if fc.strategy == "fedprox" else FedAvg(**common)
        t0 = time.time()
        start_server(server_address=args.address, config=ServerConfig(num_rounds=fc.rounds), strategy=strategy)
        seconds = time.time() - t0
    rounds = [r for r in session.records if r["round"] > 0]
    if len(rounds) < fc.rounds:
        console.print(f"[red]error:[/] only {len(rounds)} of {fc.rounds} rounds completed")
        return 2
    change = float(np.sqrt(sum(((state["arrays"][k] - session.initial[k]) ** 2).sum() for k in names)))
    finish_session(session, state["arrays"], train_seconds=seconds, overwrite=args.overwrite,
                   extra={"server_address": args.address, "adapter_change_l2": round(change, 6)})
    return 0


def run_client(args: argparse.Namespace) -> int:
    """Connect to the server and train the silo ``--silo`` each round it is asked to."""
    from flwr.client import NumPyClient, start_client
    from transformers import AutoTokenizer

    from tuneforge.tasks import get_task, load_dataset
    from tuneforge.training.federated.client import ClientSpec, local_fit
    from tuneforge.training.federated.config import DATA_SUFFIXES

    files = [f for f in sorted(args.data_dir.iterdir()) if f.stem == args.silo and f.suffix in DATA_SUFFIXES]
    if not files:
        print(f"error: no data file named {args.silo} in {args.data_dir}", file=sys.stderr)
        return 2
    examples = load_dataset(files[0], args.task, require_labels=True).examples
    specs: dict[str, ClientSpec] = {}

    def spec_for(setup: str) -> ClientSpec:
        if setup not in specs:  # the label space and knobs come from the server
            s = json.loads(setup)
            task = get_task(args.task)
            tokenizer = AutoTokenizer.from_pretrained(s["base_model"])
            enc = task.encode(examples, tokenizer, s["labels"], max_length=s["max_length"],
                              multi_label=s["multi_label"])
            specs.clear()
            specs[setup] = ClientSpec(base_path=s["base_model"], task=args.task, labels=s["labels"],
                                      multi_label=s["multi_label"], config=s["config"],
                                      learning_rate=s["learning_rate"], batch_size=s["batch_size"],
                                      silos=[enc.features], threads=os.cpu_count())
        return specs[setup]

    class Client(NumPyClient):  # type: ignore[misc]  # Flower's client interface
        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int,
                                                                                     dict[str, Any]]:
            setup = str(config["setup"])
            names = json.loads(setup)["names"]
            result = local_fit(spec_for(setup), 0, dict(zip(names, parameters, strict=True)),
                               server_round=int(config.get("server-round", 1)),
                               mu=float(config.get("proximal_mu", 0.0)))
            return ([result.arrays[k] for k in names], result.examples,
                    {"train_loss": result.train_loss, "steps": result.steps})

    start_client(server_address=args.address, client=Client().to_client(), insecure=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tuneforge.training.federated.process", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="role", required=True)
    server = sub.add_parser("server", help="the Flower server (aggregates, evaluates, writes the run folder)")
    _common(server)
    server.add_argument("--rounds", type=int, default=3)
    server.add_argument("--output", "-o", type=Path, required=True)
    server.add_argument("--eval-data", type=Path, default=None)
    server.add_argument("--strategy", choices=["fedavg", "fedprox"], default="fedavg")
    server.add_argument("--overwrite", action="store_true")
    client = sub.add_parser("client", help="one Flower client (trains one silo)")
    _common(client)
    client.add_argument("--silo", required=True, help="the silo's file name in --data-dir, without its suffix")
    args = ap.parse_args(argv)
    from tuneforge.errors import TuneforgeError

    try:
        return run_server(args) if args.role == "server" else run_client(args)
    except TuneforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
