"""The options of a federated fine-tuning run, validated when created: every problem is collected and reported
at once, named by the option (``--rounds``, ``--split`` ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuneforge.errors import ConfigError
from tuneforge.training.federated.split import SplitSpec, parse_split

__all__ = ["DATA_SUFFIXES", "FederatedConfig", "make_federated_config"]

#: the files of a --data-dir that are silos (one file per client)
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".conll")


class FederatedConfig(BaseModel):
    """A federated LoRA run: where the silos come from, the rounds, the aggregation and the local training."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="What the model learns (a sequence-level task: classification).")
    output: Path = Field(description="Folder the trained model is written to (an ordinary run folder).")
    data: Path | None = Field(None, description="One labelled file, split into simulated silos (--split).")
    data_dir: Path | None = Field(None, description="A folder holding one data file per silo (client).")
    split: str | None = Field(None, description="With --data: iid or dirichlet:ALPHA (label skew); default iid.")
    clients: int | None = Field(None, ge=1, le=1000, description="With --data: number of simulated clients.")
    clients_per_round: int | None = Field(None, ge=1, description="Clients sampled each round (default: all).")
    rounds: int = Field(3, ge=1, le=1000, description="Federated rounds.")
    eval_data: Path | None = Field(None, description="Held by the server: the global model is scored on it after "
                                                     "every round, and the run's dev report.")
    base_model: str = Field("minilm", description="A name from `tuneforge models` or a local Hugging Face folder.")
    epochs: float = Field(1.0, gt=0, le=100, description="Local epochs each client trains per round.")
    learning_rate: float | None = Field(None, gt=0, lt=1, description="Local peak learning rate (default: as "
                                                                      "`train --method lora` picks it).")
    batch_size: int | None = Field(None, ge=1, le=4096, description="Local batch size (default: by data size).")
    max_length: int | None = Field(None, ge=16, le=8192, description="Tokens per input (default: by task).")
    lora_r: int | None = Field(None, ge=1, le=1024, description="LoRA rank (default 4).")
    strategy: Literal["fedavg", "fedprox"] = Field("fedavg", description="Aggregation: fedavg or fedprox.")
    proximal_mu: float | None = Field(None, ge=0, description="fedprox: weight of the proximal term (default "
                                                              "0.01).")
    dp_noise_multiplier: float | None = Field(None, ge=0, description="DP on the client updates: Gaussian noise "
                                              "multiplier (server adds noise to the aggregate).")
    dp_clipping_norm: float | None = Field(None, gt=0, description="DP: L2 norm each client's update is clipped "
                                                                   "to (on the client).")
    seed: int = Field(42, description="Seed of the split, client sampling and training.")
    simulation_cpus: int | None = Field(None, ge=1, description="CPUs the simulation may use (default: all).")

    @model_validator(mode="after")
    def _check(self) -> FederatedConfig:
        problems: list[str] = []
        if (self.data is None) == (self.data_dir is None):
            problems.append("data, data_dir: give exactly one (--data FILE with --split and --clients, or "
                            "--data-dir SILOS/)")
        if self.data_dir is not None and self.split is not None:
            problems.append("split: applies to --data only (a --data-dir is split already, one file per client)")
        if self.data_dir is not None and self.clients is not None:
            problems.append("clients: applies to --data only (a --data-dir has one client per file)")
        if self.data is not None and self.clients is None:
            problems.append("clients: required with --data (how many clients the file is split among)")
        if self.split is not None:
            try:
                parse_split(self.split)
            except ConfigError as e:
                problems += e.problems
        if self.clients is not None and self.clients_per_round is not None and self.clients_per_round > self.clients:
            problems.append(f"clients_per_round: {self.clients_per_round} is more than the {self.clients} clients")
        if self.proximal_mu is not None and self.strategy != "fedprox":
            problems.append("proximal_mu: applies to --strategy fedprox only")
        if (self.dp_noise_multiplier is None) != (self.dp_clipping_norm is None):
            problems.append("dp_noise_multiplier, dp_clipping_norm: give both for DP on the client updates, or "
                            "neither")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def split_spec(self) -> SplitSpec:
        return parse_split(self.split or "iid")

    @property
    def mu(self) -> float:
        """The proximal term's weight (0 for FedAvg)."""
        if self.strategy != "fedprox":
            return 0.0
        return 0.01 if self.proximal_mu is None else self.proximal_mu

    @property
    def dp(self) -> bool:
        return self.dp_clipping_norm is not None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def make_federated_config(values: dict[str, Any]) -> FederatedConfig:
    """A validated config; every problem in one ConfigError naming the options."""
    try:
        return FederatedConfig.model_validate(values)
    except ValidationError as e:
        problems: list[str] = []
        for err in e.errors():
            msg = err["msg"]
            if msg.startswith("Value error, "):
                problems += msg[len("Value error, "):].split("; ")
                continue
            loc = ".".join(str(x) for x in err["loc"]) or "options"
            problems.append(f"{loc}: {msg.replace('Input should be', 'must be')}"
                            + (f" (got {err['input']!r})" if isinstance(err.get("input"), (int, float, str))
                               and err["type"] != "missing" else ""))
        raise ConfigError(problems, hint="Fix the options above (see `tuneforge federated --help`).") from None
