"""A federated client: local LoRA training on one silo, and the Flower ``ClientApp`` around it.

:class:`ClientSpec` is everything a client process needs, picklable (Ray ships it to its actors; a client
process started by hand builds it from the same options): the base model's folder, the task, the label space,
the run configuration and each silo's encoded features. The model is built the way ``tuneforge train --method
lora`` builds it (the task's ``build_model``, the method's ``prepare``), once per process, and every round starts
from the global adapter and head the server sent. Training is one short run of the recipe's Trainer
(:class:`~tuneforge.training.trainer.TuneforgeTrainer`) with the recipe's optimizer; FedProx adds
``mu / 2 * ||w - w_global||^2`` over the exchanged tensors to the loss through the Trainer's ``train_loss`` hook.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.training.federated.weights import get_trainable, set_trainable

__all__ = ["ClientSpec", "LocalResult", "build_model", "local_fit", "make_client_app"]

#: the keys of the records in a round's messages (Flower's FedAvg defaults)
ARRAYS, CONFIG, METRICS = "arrays", "config", "metrics"
#: the metric FedAvg weights by: the silo's examples, or 1 each under DP (the noise assumes a uniform mean)
WEIGHT_KEY, UNIFORM_KEY = "num-examples", "uniform-weight"


@dataclass
class ClientSpec:
    base_path: str
    task: str
    labels: list[str]
    multi_label: bool
    #: the run configuration (a TrainConfig's ``to_json()``), epochs as the local epochs
    config: dict[str, Any]
    learning_rate: float
    batch_size: int
    silos: list[list[dict[str, Any]]] = field(default_factory=list)
    #: torch threads per client process (None: torch's default)
    threads: int | None = None

    def model_key(self) -> str:
        """What the model is built from (a process keeps one model per key)."""
        return json.dumps([self.base_path, self.task, self.labels, self.multi_label, self.config], sort_keys=True,
                          default=str)


@dataclass
class LocalResult:
    arrays: dict[str, np.ndarray]
    examples: int
    train_loss: float
    steps: int


_BUILT: dict[str, tuple[Any, Any, Any]] = {}  # model key -> (model, tokenizer, config): one model per process


def build_model(spec: ClientSpec) -> tuple[Any, Any, Any]:
    """The LoRA task model (as ``train --method lora`` builds it), its tokenizer and the run config."""
    from transformers import AutoTokenizer

    from tuneforge.methods import get_method
    from tuneforge.tasks import get_task
    from tuneforge.training.config import make_config
    from tuneforge.utils.hf import quiet_transformers

    quiet_transformers()
    config = make_config(spec.config, "the federated run")
    task = get_task(spec.task)
    with warnings.catch_warnings():  # peft asks transformers 5 about gradient checkpointing by its old name
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*checkpointing.*")
        model = task.build_model(Path(spec.base_path), spec.labels, multi_label=spec.multi_label)
        model = get_method(config.method).prepare(model, config, task)
    tokenizer = AutoTokenizer.from_pretrained(spec.base_path)
    return model, tokenizer, config


def _cached(spec: ClientSpec) -> tuple[Any, Any, Any]:
    key = spec.model_key()
    if key not in _BUILT:
        import torch

        if spec.threads is not None:
            torch.set_num_threads(max(1, spec.threads))
        _BUILT.clear()
        _BUILT[key] = build_model(spec)
    return _BUILT[key]


def _proximal_loss(global_arrays: dict[str, np.ndarray], mu: float, model: Any) -> Any:
    """The Trainer ``train_loss`` hook of FedProx: the model's loss plus the proximal term."""
    import torch

    anchors = {name: torch.as_tensor(global_arrays[name]) for name, p in model.named_parameters() if p.requires_grad}

    def loss(m: Any, inputs: dict[str, Any], num_items_in_batch: Any, metrics: dict[str, Any]) -> Any:
        base = m(**inputs).loss
        prox = sum(((p - anchors[n].to(p.device, p.dtype)) ** 2).sum()
                   for n, p in m.named_parameters() if p.requires_grad)
        return base + 0.5 * mu * prox

    return loss


def local_fit(spec: ClientSpec, silo: int, global_arrays: dict[str, np.ndarray], *, server_round: int,
              mu: float = 0.0) -> LocalResult:
    """Train silo ``silo`` for the local epochs from ``global_arrays``; the updated adapter and head."""
    import torch
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from tuneforge.tasks import get_task
    from tuneforge.training.optim import build_optimizer
    from tuneforge.training.trainer import TuneforgeTrainer

    built, tokenizer, config = _cached(spec)
    set_trainable(built, global_arrays)
    task = get_task(spec.task)
    features = spec.silos[silo]
    seed = int(config.seed) + 1000 * server_round + silo
    optimizer = build_optimizer(built, lr=spec.learning_rate, weight_decay=config.weight_decay,
                                head_lr_multiplier=config.head_lr_multiplier)
    with tempfile.TemporaryDirectory(prefix="tuneforge-fl-") as tmp:
        args = TrainingArguments(output_dir=tmp, num_train_epochs=float(config.epochs),
                                 per_device_train_batch_size=spec.batch_size, learning_rate=spec.learning_rate,
                                 lr_scheduler_type="constant", weight_decay=config.weight_decay,
                                 max_grad_norm=config.max_grad_norm, seed=seed, save_strategy="no",
                                 eval_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True,
                                 use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
        trainer = TuneforgeTrainer(model=built, args=args, train_dataset=features,
                                   data_collator=task.collator(tokenizer), optimizers=(optimizer, None),
                                   train_loss=_proximal_loss(global_arrays, mu, built) if mu > 0 else None)
        trainer.remove_callback(PrinterCallback)  # the server reports the rounds
        trainer.remove_callback(ProgressCallback)
        out = trainer.train()
    built.eval()
    return LocalResult(get_trainable(built), len(features), float(out.training_loss), int(trainer.state.global_step))


def make_client_app(spec: ClientSpec, *, dp: bool = False) -> Any:
    """The Flower ``ClientApp`` of a run: on each training message, ``local_fit`` on the silo named by the node's
    ``partition-id``; with DP, Flower's ``fixedclipping_mod`` clips the update to the norm the server sends."""
    from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.clientapp.mod import fixedclipping_mod

    app = ClientApp(mods=[fixedclipping_mod] if dp else None)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        silo = int(context.node_config["partition-id"])
        received: Any = msg.content[ARRAYS]
        config: Any = msg.content[CONFIG]
        arrays = dict(zip(received.keys(), received.to_numpy_ndarrays(), strict=True))
        result = local_fit(spec, silo, arrays, server_round=int(config.get("server-round", 1)),
                           mu=float(config.get("proximal-mu", 0.0)))
        reply = ArrayRecord({k: Array(np.ascontiguousarray(result.arrays[k])) for k in received})
        metrics = MetricRecord({WEIGHT_KEY: result.examples, UNIFORM_KEY: 1, "train_loss": result.train_loss,
                                "steps": result.steps})
        return Message(RecordDict({ARRAYS: reply, METRICS: metrics}), reply_to=msg)

    return app
