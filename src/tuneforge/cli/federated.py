"""``tuneforge federated``: LoRA fine-tuning across data silos with Flower (a simulation on this machine); the
result is an ordinary run folder that ``predict``, ``evaluate`` and ``serve`` use as any other."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tuneforge.cli.options import err, offline

__all__ = ["federated", "register"]

FEDERATED_HELP = ("Fine-tune LoRA adapters (and the task head) across data silos with Flower.\n\n"
                  "Each round the sampled clients train locally and the server averages their adapters (FedAvg or "
                  "FedProx); the data and the base model never travel. One data file per silo (--data-dir), or one "
                  "file split for a simulation (--data with --split and --clients). The result is an ordinary run "
                  "folder (predict, evaluate, serve).")


def federated(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the trained model (a run folder).")],
    data: Annotated[Path | None, typer.Option(help="One labelled file, split among --clients simulated "
                                                   "clients.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="A folder with one data file per silo (client).")] = None,
    split: Annotated[str | None, typer.Option(help="With --data: iid (default) or dirichlet:ALPHA (label skew; "
                                                   "smaller ALPHA, fewer classes per client).")] = None,
    clients: Annotated[int | None, typer.Option(help="With --data: number of simulated clients.")] = None,
    clients_per_round: Annotated[int | None, typer.Option(help="Clients sampled each round (default: all).")] = None,
    rounds: Annotated[int, typer.Option(help="Federated rounds.")] = 3,
    task: Annotated[str, typer.Option("--task", "-t", help="classification (one label per text).")] = "classification",
    base_model: Annotated[str, typer.Option(help="minilm (default), e5-multilingual, bert-tiny, or a local "
                                                 "Hugging Face folder.")] = "minilm",
    eval_data: Annotated[Path | None, typer.Option(help="Dev data held by the server: the global model is scored "
                                                        "on it after every round.")] = None,
    epochs: Annotated[float, typer.Option(help="Local epochs per round on each client.")] = 1.0,
    lr: Annotated[float | None, typer.Option("--lr", help="Local learning rate (default: as `train --method "
                                                          "lora`).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Local batch size (default: by data size).")] = None,
    max_length: Annotated[int | None, typer.Option(help="Max tokens per input (default 256).")] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank (default 4).")] = None,
    strategy: Annotated[str, typer.Option(help="fedavg or fedprox.")] = "fedavg",
    proximal_mu: Annotated[float | None, typer.Option(help="fedprox: weight of the proximal term (default "
                                                           "0.01).")] = None,
    dp_noise_multiplier: Annotated[float | None, typer.Option(help="DP on the client updates: noise multiplier "
                                                                   "(with --dp-clipping-norm).")] = None,
    dp_clipping_norm: Annotated[float | None, typer.Option(help="DP: L2 norm each client update is clipped "
                                                                "to.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, client sampling and training.")] = 42,
    cpus: Annotated[int | None, typer.Option(help="CPUs the simulation uses (default: all).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run in --output.")] = False,
) -> None:
    offline()
    from tuneforge.training.federated import make_federated_config
    from tuneforge.training.federated.run import federated_train

    values: dict[str, Any] = dict(task=task, output=output, data=data, data_dir=data_dir, split=split,
                                  clients=clients, clients_per_round=clients_per_round, rounds=rounds,
                                  eval_data=eval_data, base_model=base_model, epochs=epochs, learning_rate=lr,
                                  batch_size=batch_size, max_length=max_length, lora_r=lora_r, strategy=strategy,
                                  proximal_mu=proximal_mu, dp_noise_multiplier=dp_noise_multiplier,
                                  dp_clipping_norm=dp_clipping_norm, seed=seed, simulation_cpus=cpus)
    fc = make_federated_config(values)
    result = federated_train(fc, overwrite=overwrite, console=err)
    metrics = result.metrics or {}
    shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    err.print(f"[green]Saved[/] {result.output}" + (f"  (dev: {shown})" if shown else ""))


federated.__doc__ = FEDERATED_HELP


def register(app: typer.Typer) -> None:
    app.command("federated")(federated)
