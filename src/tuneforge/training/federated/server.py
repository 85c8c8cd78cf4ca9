"""The server side of a federated run on Flower's message API: the strategy (FedAvg or FedProx over the exchanged
tensors, wrapped in Flower's client-side fixed-clipping DP when asked), a wrapper that records each round (who
trained, on how many examples, the bytes sent each way) and refuses a round in which a client failed, and the
``ServerApp`` that runs it with the server's global evaluation after every round."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.serverapp.strategy import Strategy

from tuneforge.errors import RunError
from tuneforge.training.federated.client import METRICS, UNIFORM_KEY, WEIGHT_KEY
from tuneforge.training.federated.config import FederatedConfig
from tuneforge.training.federated.weights import payload_bytes

__all__ = ["RoundRecord", "RoundWatch", "ServerRun", "make_server_app", "make_strategy"]


@dataclass
class RoundRecord:
    """One round as the server saw it."""

    round: int
    clients: int = 0
    examples: int = 0
    steps: int = 0
    #: clients whose training failed this round (left out of the average, as Flower's FedAvg does), and why
    failed: int = 0
    failure: str | None = None
    train_loss: float | None = None
    bytes_down: int = 0
    bytes_up: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "clients": self.clients, "examples": self.examples, "steps": self.steps,
                "train_loss": None if self.train_loss is None else round(self.train_loss, 5),
                **({"failed_clients": self.failed, "failure": self.failure} if self.failed else {}),
                "bytes_sent_to_clients": self.bytes_down, "bytes_received_from_clients": self.bytes_up,
                **{k: round(v, 5) for k, v in self.metrics.items()}}


def make_strategy(fc: FederatedConfig, *, n_clients: int) -> Any:
    """Flower's FedAvg or FedProx sampling ``clients_per_round`` of ``n_clients`` each round (no evaluation on the
    clients: the server scores the global model), DP-wrapped when the run asks for it."""
    from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, FedProx

    k = fc.clients_per_round or n_clients
    common: dict[str, Any] = dict(fraction_train=k / n_clients, min_train_nodes=k, min_available_nodes=n_clients,
                                  fraction_evaluate=0.0, min_evaluate_nodes=0,
                                  # DP's noise is calibrated for a plain mean of clipped updates
                                  weighted_by_key=UNIFORM_KEY if fc.dp else WEIGHT_KEY)
    strategy: Strategy = FedProx(proximal_mu=fc.mu, **common) if fc.strategy == "fedprox" else FedAvg(**common)
    if fc.dp:
        assert fc.dp_noise_multiplier is not None and fc.dp_clipping_norm is not None
        strategy = DifferentialPrivacyClientSideFixedClipping(strategy, noise_multiplier=fc.dp_noise_multiplier,
                                                              clipping_norm=fc.dp_clipping_norm,
                                                              num_sampled_clients=k)
    return strategy


class RoundWatch(Strategy):
    """A Flower strategy around another that records each round; a client that failed is left out of the round's
    average (and recorded), a round in which every client failed stops the run."""

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.rounds: dict[int, RoundRecord] = {}

    def _record(self, server_round: int) -> RoundRecord:
        return self.rounds.setdefault(server_round, RoundRecord(server_round))

    def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Iterable[Any]:
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        rec = self._record(server_round)
        rec.bytes_down = payload_bytes(dict(zip(arrays.keys(), arrays.to_numpy_ndarrays(), strict=True))) \
            * len(messages)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Any]) -> tuple[Any, Any]:
        replies = list(replies)
        failed = [m.error.reason for m in replies if m.has_error()]
        replies = [m for m in replies if not m.has_error()]
        rec = self._record(server_round)
        rec.failed = len(failed)
        rec.failure = _last_line(failed[0]) if failed else None
        if not replies:  # Flower would go on with the old weights; a round nobody trained in stops the run
            raise RunError(f"federated round {server_round}: all {len(failed)} clients failed: {rec.failure}",
                           hint="Fix the cause above and run the command again.")
        rec.clients = len(replies)
        losses, sizes = [], []
        for m in replies:
            metrics = m.content[METRICS]
            sizes.append(int(metrics[WEIGHT_KEY]))
            losses.append(float(metrics["train_loss"]))
            rec.steps += int(metrics["steps"])
            for record in m.content.array_records.values():
                rec.bytes_up += int(sum(a.nbytes for a in record.to_numpy_ndarrays()))
        rec.examples = sum(sizes)
        rec.train_loss = float(np.average(losses, weights=sizes)) if sizes else None
        return self.inner.aggregate_train(server_round, replies)  # type: ignore[no-any-return]

    def configure_evaluate(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Iterable[Any]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)  # type: ignore[no-any-return]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Any]) -> Any:
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.inner.summary()


def _last_line(reason: str) -> str:
    lines = [x for x in reason.strip().splitlines() if x.strip()]
    return lines[-1][:300] if lines else "no reason given"


@dataclass
class ServerRun:
    """What the ServerApp leaves behind: the final global tensors, the rounds, or the error that stopped it."""

    arrays: dict[str, np.ndarray] | None = None
    error: BaseException | None = None
    watch: RoundWatch | None = None


def make_server_app(fc: FederatedConfig, *, n_clients: int, initial: dict[str, np.ndarray],
                    evaluate: Callable[[int, dict[str, np.ndarray]], dict[str, float]],
                    on_round: Callable[[RoundRecord], None], result: ServerRun) -> Any:
    """The ``ServerApp``: ``fc.rounds`` rounds of the strategy from ``initial``; after each, ``evaluate(round,
    global tensors)`` (the server's metric) and ``on_round`` with the round's record."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp

    watch = RoundWatch(make_strategy(fc, n_clients=n_clients))
    result.watch = watch
    app = ServerApp()

    def evaluate_fn(server_round: int, arrays: Any) -> Any:
        tensors = dict(zip(arrays.keys(), arrays.to_numpy_ndarrays(), strict=True))
        metrics = evaluate(server_round, tensors)
        rec = watch._record(server_round)
        rec.metrics = dict(metrics)
        on_round(rec)
        return MetricRecord({k: float(v) for k, v in metrics.items()}) if metrics else None

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        import random

        random.seed(fc.seed)  # Flower samples the round's clients with `random`
        try:
            res = watch.start(grid=grid, initial_arrays=ArrayRecord({k: Array(v) for k, v in initial.items()}),
                              num_rounds=fc.rounds, train_config=ConfigRecord({}), evaluate_fn=evaluate_fn)
            result.arrays = dict(zip(res.arrays.keys(), res.arrays.to_numpy_ndarrays(), strict=True))
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, raised there
            result.error = e

    return app
