"""The fine-tuning recipe: setup → train → evaluate → save, on transformers' ``Trainer``.

A run folder is complete when ``tuneforge.json`` exists; it is written last. While training, the folder holds
``run-config.json`` and ``checkpoints/`` so that a killed run continues with ``resume=True``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tuneforge.data import ColumnMap, Dataset, load_dataset
from tuneforge.errors import ConfigError, DataError, DataProblem, RunError
from tuneforge.evaluation.report import write_evaluation
from tuneforge.methods import FitContext, Method, get_method, parameter_report
from tuneforge.models.registry import ResolvedModel, resolve_base_model
from tuneforge.settings import Settings
from tuneforge.tasks import Encoded, Task, get_task
from tuneforge.tasks.base import split_outputs
from tuneforge.training.callbacks import EventCallback, RichProgressCallback
from tuneforge.training.config import TrainConfig
from tuneforge.training.hardware import use_bf16
from tuneforge.training.optim import build_optimizer, freeze_lower_layers
from tuneforge.training.warm_start import warm_start_classifier
from tuneforge.utils.fs import atomic_write_json, storage_errors
from tuneforge.utils.hf import quiet_transformers

__all__ = ["TrainResult", "auto_hyperparameters", "load_training_data", "saved_config", "train"]

MANIFEST = "tuneforge.json"
RUN_CONFIG = "run-config.json"
FORMAT_VERSION = 1


@dataclass
class TrainResult:
    output: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any] | None
    stopped_early: bool = False
    interrupted: bool = False


@dataclass
class _Prepared:
    config: TrainConfig
    task: Task
    base: ResolvedModel
    train_ds: Dataset
    eval_ds: Dataset | None
    labels: list[str]
    multi_label: bool
    tokenizer: Any
    train_enc: Encoded
    eval_enc: Encoded | None
    hp: dict[str, Any] = field(default_factory=dict)
    method: Method | None = None
    unlabeled: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


def _columns(config: TrainConfig) -> ColumnMap:
    return ColumnMap(**config.columns.model_dump())


def encoder_parameters(model_config: dict[str, Any]) -> int:
    """Approximate parameters of the transformer layers (embeddings excluded) from a config.json."""
    h = int(model_config.get("hidden_size", 384))
    layers = int(model_config.get("num_hidden_layers", 6))
    ffn = int(model_config.get("intermediate_size", 4 * h))
    return layers * (4 * h * h + 2 * h * ffn)


def auto_hyperparameters(config: TrainConfig, *, n_train: int, model_config: dict[str, Any], model_max: int,
                         task: Task) -> dict[str, Any]:
    """Fill the knobs left as auto, by the size of the encoder (embeddings excluded) and of the data.

    Small encoders want a larger learning rate than BERT-base's usual 5e-5, which leaves all-MiniLM-L6-v2 (11M
    encoder parameters) near chance on a few hundred examples; small data wants small batches, i.e. more
    updates in the same epochs. Measured here: 400 SST-2 sentences, 3 epochs, minilm — batch 8 at 2e-4 gives
    0.77 validation accuracy (mean of 3 seeds), batch 16 at 1e-4 0.76; 600 ChnSentiCorp reviews, 2 epochs,
    e5-multilingual (21M) — 1e-4 at batch 16 gives 0.87, at 2e-4 training does not converge; on 1,500 reviews
    1e-4 does not converge either, hence 5e-5 for classification from 1,000 examples.
    """
    size = encoder_parameters(model_config)
    small_data = n_train < 1000
    small_model = size < 15_000_000
    lr = config.learning_rate
    if lr is None:
        if size < 2_000_000:
            lr = 3e-4
        elif small_model:
            lr = 2e-4 if small_data else 1e-4
        elif size < 50_000_000:
            # e5-multilingual (12 layers): classification at 1e-4 collapsed to one class on 1,500 ChnSentiCorp
            # reviews (loss flat at 0.70) while 600 trained well; halve it once there are enough steps
            lr = 5e-5 if not small_data and task.name == "classification" else 1e-4
        else:
            lr = 5e-5
    bs = config.batch_size
    if bs is None:
        if small_data and small_model:
            bs = 8
        else:
            bs = 32 if n_train >= 5000 and task.name == "classification" else 16
    max_len = min(config.max_length or task.default_max_length, model_max)
    return {"learning_rate": lr, "batch_size": bs, "max_length": max_len,
            "freeze_layers": auto_freeze_layers(config, n_train=n_train, model_config=model_config)}


#: runs that see at most this many training examples (epochs x examples) freeze their lower layers (auto)
SHORT_RUN_EXAMPLES = 10_000


def auto_freeze_layers(config: TrainConfig, *, n_train: int, model_config: dict[str, Any]) -> int:
    """``freeze_layers: auto``: the lower third of the encoder stays fixed in a short full fine-tuning run.

    A short run moves the lower layers little, and most of its time goes to their backward pass and their
    optimizer updates: on 2,000 SST-2 sentences (1 epoch, minilm, batch 16) freezing the embeddings and layers
    0-1 cuts training time by about a fifth at the same validation accuracy (0.801 against 0.802, 3 seeds),
    and on 400 sentences (3 epochs) it acts as a regularizer (0.783 against 0.771, 3 seeds, best epoch picked on
    the validation set itself). Longer runs, methods that leave the encoder's weights alone (LoRA, adapters ...)
    and runs that train the embeddings freeze nothing; a number always wins."""
    if config.freeze_layers != "auto":
        return int(config.freeze_layers)
    if not get_method(config.method).trains_encoder or not config.freeze_embeddings:
        return 0
    if config.epochs * n_train > SHORT_RUN_EXAMPLES:
        return 0
    return int(model_config.get("num_hidden_layers", 0)) // 3


def _model_max_positions(base_path: Path, tokenizer: Any) -> int:
    cfg = json.loads((base_path / "config.json").read_text())
    limit = int(cfg.get("max_position_embeddings", 512))
    if cfg.get("model_type") in ("roberta", "xlm-roberta"):
        limit -= 2  # their positions start after the padding index
    tok_max = getattr(tokenizer, "model_max_length", limit) or limit
    return int(min(limit, tok_max if tok_max < 1e6 else limit))


def load_training_data(task: str, data: Path | str, eval_data: Path | str | None = None, *,
                       columns: ColumnMap | None = None, multi_label: bool | None = None,
                       label_separator: str | None = None, lenient_bio: bool = False) -> tuple[Dataset, Dataset | None]:
    """Load and validate training and dev data as a run will use them; problems in both files are reported
    together in one DataError. (The service validates uploads with this same function.)"""
    problems: list[DataProblem] = []
    train_ds = eval_ds = None
    common: dict[str, Any] = dict(columns=columns, multi_label=multi_label, label_separator=label_separator,
                                  strict_bio=not lenient_bio)
    try:
        train_ds = load_dataset(data, task, require_labels=True, min_classes=2, **common)
    except DataError as e:
        problems += e.problems
    if eval_data is not None:
        label_set = train_ds.labels if train_ds is not None and task == "classification" else None
        try:
            eval_ds = load_dataset(eval_data, task, require_labels=True, label_set=label_set,
                                   **{**common, "multi_label": train_ds.multi_label if train_ds else multi_label})
        except DataError as e:
            problems += e.problems
    if eval_data is not None:
        problems += _augmented_rows(Path(eval_data))
    if problems:
        raise DataError(problems, hint="Fix these lines (or map the right columns with --text-column, "
                                       "--label-column ...) and run the command again.")
    assert train_ds is not None
    return train_ds, eval_ds


def _augmented_rows(path: Path) -> list[DataProblem]:
    """Rows marked ``augmented`` (by `tuneforge data augment`) must never be dev or test data."""
    if path.suffix != ".jsonl" or not path.is_file():
        return []
    problems = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if '"augmented"' in line:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and row.get("augmented"):
                    problems.append(DataProblem(str(path), i, "augmented", "an augmented row in dev data",
                                                "evaluate on original rows only; augmented rows are for training"))
                    if len(problems) >= 5:
                        break
    return problems


def _prepare(config: TrainConfig, settings: Settings, console: Console) -> _Prepared:
    from transformers import AutoTokenizer

    task = get_task(config.task)
    # Check the cheap things first so that a typo fails in milliseconds, not after a model load.
    with console.status("Reading and validating data..."):
        train_ds, eval_ds = load_training_data(
            task.name, config.data, config.eval_data, columns=_columns(config), multi_label=config.multi_label,
            label_separator=config.label_separator, lenient_bio=config.lenient_bio)
    method = get_method(config.method)
    with console.status(f"Loading base model {config.base_model}..."):
        requested = resolve_base_model(config.base_model, settings.cache_dir)
        base, note = method.base_model(config, requested, settings)
        tokenizer = AutoTokenizer.from_pretrained(str(base.path))
    notes: dict[str, Any] = {}
    if note:
        console.print(f"[yellow]note:[/] {note}")
        notes["base_model_note"] = note
        notes["requested_base_model"] = requested.name
    unlabeled = _read_unlabeled(config.unlabeled_data) if config.unlabeled_data else []
    if config.augment == "eda":
        from tuneforge.data.augment import EmbeddingSynonyms, augment_examples

        with console.status("Augmenting the training data (EDA)..."):
            synonyms = EmbeddingSynonyms.from_model_dir(base.path)
            n0 = len(train_ds.examples)
            train_ds.examples = augment_examples(train_ds.examples, synonyms=synonyms, copies=config.augment_copies,
                                                 rate=config.augment_rate, seed=config.seed)
        notes["augmented_rows"] = len(train_ds.examples) - n0
        console.print(f"Augmented {n0} training examples with {notes['augmented_rows']} EDA rows "
                      "(marked augmented; dev data untouched).")
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"base_model: {base.path} has no fast tokenizer (tokenizer.json); TuneForge needs one to "
                          "map predictions back to character offsets")
    multi_label = bool(train_ds.multi_label)
    labels = task.label_list(train_ds.examples, multi_label)
    model_config = json.loads((base.path / "config.json").read_text())
    hp = auto_hyperparameters(config, n_train=len(train_ds), model_config=model_config,
                              model_max=_model_max_positions(base.path, tokenizer), task=task)
    with console.status("Tokenizing..."):
        train_enc = task.encode(train_ds.examples, tokenizer, labels, max_length=hp["max_length"],
                                stride=config.stride, multi_label=multi_label)
        eval_enc = None
        if eval_ds is not None:
            eval_enc = task.encode(eval_ds.examples, tokenizer, labels, max_length=hp["max_length"],
                                   stride=config.stride, multi_label=multi_label)
    if train_enc.truncated:
        console.print(f"[yellow]note:[/] {train_enc.truncated} of {len(train_ds)} training inputs are longer than "
                      f"max_length {hp['max_length']} and were "
                      + ("split into overlapping windows." if task.name == "qa" else "truncated."))
    return _Prepared(config, task, base, train_ds, eval_ds, labels, multi_label, tokenizer, train_enc, eval_enc, hp,
                     method=method, unlabeled=unlabeled, notes=notes)


def _read_unlabeled(path: Path) -> list[str]:
    """Texts from a .txt file (one per line) or from the text column of any data file; labels are ignored."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"unlabeled_data: {path} does not exist")
    if path.suffix in (".txt", ".text"):
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    else:
        ds = load_dataset(path, "classification", require_labels=False, allow_empty=True)
        texts = [ex["text"] for ex in ds.examples]
    texts = [t for t in texts if t]
    if not texts:
        raise ConfigError(f"unlabeled_data: {path} holds no text")
    return texts


class _EvalStash:
    """Keeps the decoded dev predictions of every evaluation, so the final report needs no extra pass."""

    def __init__(self, p: _Prepared) -> None:
        self.p = p
        self.pending: list[dict[str, Any]] | None = None
        self.by_step: dict[int, list[dict[str, Any]]] = {}

    def compute_metrics(self, eval_pred: Any) -> dict[str, float]:
        p = self.p
        assert p.eval_enc is not None and p.eval_ds is not None
        preds = eval_pred.predictions
        preds = preds if isinstance(preds, tuple) else (preds,)
        # Trainer evaluates in its own order (transformers 5 groups eval batches by length too), so rows are
        # matched back to features by their input ids; identical inputs have identical outputs.
        rows = _strip_padding(eval_pred.inputs, pad_id=p.tokenizer.pad_token_id)
        slots: dict[tuple[int, ...], list[int]] = {}
        for i, f in enumerate(p.eval_enc.features):
            slots.setdefault(tuple(f["input_ids"]), []).append(i)
        per_row = split_outputs(preds, [len(r) for r in rows], per_token=p.task.per_token)
        outputs: list[Any] = [None] * len(p.eval_enc.features)
        for ids, out in zip(rows, per_row, strict=True):
            outputs[slots[tuple(ids)].pop()] = out
        decoded = p.task.decode(outputs, p.eval_enc, p.eval_ds.examples, p.labels, multi_label=p.multi_label)
        self.pending = decoded
        scores = p.task.score(decoded, p.eval_ds.examples, p.labels, multi_label=p.multi_label)
        return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float)) and k != "n"}

    def on_evaluated(self, step: int) -> None:
        if self.pending is not None:
            self.by_step[step] = self.pending
            self.pending = None


def _strip_padding(inputs: np.ndarray, *, pad_id: int | None) -> list[list[int]]:
    """Input ids of each row without trailing padding (the collator's pad id, or -100 from Trainer's concat)."""
    pads = {-100} | ({pad_id} if pad_id is not None else set())
    rows = []
    for row in np.asarray(inputs):
        n = len(row)
        while n and int(row[n - 1]) in pads:
            n -= 1
        rows.append([int(x) for x in row[:n]])
    return rows


def _stash_callback(stash: _EvalStash) -> Any:
    from transformers import TrainerCallback

    class _Cb(TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            stash.on_evaluated(state.global_step)

    return _Cb()


def _versions() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    import tuneforge

    return {"tuneforge": tuneforge.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "python": platform.python_version()}


def _fingerprint(ds: Dataset) -> dict[str, Any]:
    return {"path": str(ds.path), "format": ds.format, "examples": len(ds), "sha256": ds.fingerprint}


def saved_config(output: Path) -> TrainConfig:
    """The configuration an unfinished run in ``output`` was started with (what ``resume`` continues)."""
    path = Path(output) / RUN_CONFIG
    if not path.exists():
        raise RunError(f"{output} holds no interrupted run to resume.", hint="Start a new run without --resume.")
    return TrainConfig.model_validate(json.loads(path.read_text())["config"])


def _check_output(out: Path, *, resume: bool, overwrite: bool) -> None:
    if (out / MANIFEST).exists() and not overwrite:
        raise RunError(f"{out} already holds a trained model.",
                       hint="Choose another --output, or pass --overwrite to replace it.")
    if resume:
        saved_config(out)  # raises if there is nothing to resume
        return
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = "an interrupted run" if (out / RUN_CONFIG).exists() else "other files"
        raise RunError(f"{out} already exists and holds {what}.",
                       hint="Pass --resume to continue an interrupted run, --overwrite to start over, "
                            "or choose another --output.")


def train(config: TrainConfig, *, settings: Settings | None = None, resume: bool = False, overwrite: bool = False,
          console: Console | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Fine-tune ``config.base_model`` on ``config.data`` and write a self-contained model folder.

    ``on_event`` receives training logs (loss, learning rate, dev metrics); ``should_stop`` is polled every step
    and ends training early with a checkpoint to resume from (cancel or pause from a job queue).
    """
    settings = settings or Settings()
    console = console or Console(stderr=True)
    out = Path(config.output)
    _check_output(out, resume=resume, overwrite=overwrite)
    if resume:
        config = saved_config(out)
        console.print(f"Resuming the run in {out} with its saved configuration.")
    t_start = time.time()
    p = _prepare(config, settings, console)
    if overwrite and out.exists() and not resume:
        with storage_errors(out):
            shutil.rmtree(out)
    with storage_errors(out):
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            atomic_write_json(out / RUN_CONFIG, {"config": config.to_json(), "started_at": _now()})
    try:
        return _run(p, out, console, resume=resume, on_event=on_event, should_stop=should_stop, t_start=t_start)
    except KeyboardInterrupt:
        console.print(f"[yellow]Interrupted.[/] Continue later with: tuneforge train --resume --output {out}")
        raise


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _training_args(p: _Prepared, ckpt_dir: Path, bf16: bool) -> Any:
    import torch
    from transformers import TrainingArguments

    c = p.config
    has_eval = p.eval_enc is not None
    reload_best = p.method is None or p.method.reload_best
    strategy = "steps" if c.eval_every else "epoch"
    return TrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=c.epochs,
        learning_rate=p.hp["learning_rate"],
        per_device_train_batch_size=p.hp["batch_size"],
        per_device_eval_batch_size=c.eval_batch_size,
        gradient_accumulation_steps=c.grad_accum,
        weight_decay=c.weight_decay,
        warmup_steps=c.warmup_ratio,  # a float below 1 is a ratio of the total steps in transformers 5
        lr_scheduler_type=c.lr_scheduler,
        max_grad_norm=c.max_grad_norm,
        label_smoothing_factor=c.label_smoothing,
        seed=c.seed,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        eval_strategy=strategy if has_eval else "no",
        eval_steps=c.eval_every,
        save_strategy=strategy,
        save_steps=c.eval_every or 500,  # only read with the "steps" strategy
        save_total_limit=2,
        load_best_model_at_end=has_eval and reload_best,
        metric_for_best_model=p.task.main_metric if has_eval and reload_best else None,
        greater_is_better=True,
        logging_steps=c.logging_steps,
        logging_first_step=True,
        # Trainer drops every feature the model's forward() does not name; the teacher's probabilities are no
        # model input, and without this distillation silently trained on the hard labels alone
        remove_unused_columns=c.distill_from is None,
        report_to=[],
        disable_tqdm=True,
        train_sampling_strategy="group_by_length",
        dataloader_num_workers=0,
        save_only_model=False,
        include_for_metrics=["inputs"] if has_eval else [],
    )


def last_complete_checkpoint(ckpt_dir: Path, console: Console | None = None) -> str | None:
    """The newest checkpoint that was written to the end, or None.

    Trainer writes ``checkpoint-N`` in place and its ``trainer_state.json`` last, so a run killed while saving
    leaves a newest folder without it; resuming from that one would fail. Such folders are removed."""
    import re
    import shutil

    if not ckpt_dir.is_dir():
        return None
    found = sorted(((int(m.group(1)), d) for d in ckpt_dir.iterdir()
                    if d.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", d.name))), reverse=True)
    for _, d in found:
        if (d / "trainer_state.json").is_file():
            return str(d)
        if console is not None:
            console.print(f"Removing {d.name}: the run was stopped while writing it.")
        shutil.rmtree(d, ignore_errors=True)
    return None


def _run(p: _Prepared, out: Path, console: Console, *, resume: bool,
         on_event: Callable[[dict[str, Any]], None] | None, should_stop: Callable[[], bool] | None,
         t_start: float) -> TrainResult:
    from torch.utils.tensorboard import SummaryWriter
    from transformers import EarlyStoppingCallback, set_seed
    from transformers.integrations import TensorBoardCallback

    from tuneforge.training.dropout import use_fast_dropout
    from tuneforge.training.trainer import TuneforgeTrainer

    c = p.config
    quiet_transformers()
    set_seed(c.seed)
    bf16 = use_bf16(c.precision)
    assert p.method is not None
    if p.method.own_loop:
        return _run_own_loop(p, out, console, bf16=bf16, t_start=t_start)
    model_kwargs: dict[str, Any] = {}
    if c.dropout is not None:
        model_kwargs.update(hidden_dropout_prob=c.dropout, attention_probs_dropout_prob=c.dropout)
    model = p.task.build_model(p.base.path, p.labels, multi_label=p.multi_label, **model_kwargs)
    if c.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if p.hp["freeze_layers"]:
        freeze_lower_layers(model, p.hp["freeze_layers"])
    if c.warm_start_head and c.task == "classification":
        probe_loss = warm_start_classifier(model, p.train_enc.features, p.task.collator(p.tokenizer),
                                           multi_label=p.multi_label, seed=c.seed)
        if probe_loss is not None:
            console.print(f"Warm-started the classification head (probe loss {probe_loss:.3f}).")
    n_layers = int(getattr(model.config, "num_hidden_layers", 0))
    train_features = p.train_enc.features
    if c.distill_from is not None:
        train_features = _with_teacher(p, console)
    total_steps = _total_steps(len(train_features), p.hp["batch_size"], c)
    model = p.method.prepare(model, c, p.task, total_steps=total_steps)
    use_fast_dropout(model)  # torch's CPU dropout mask costs a tenth of a step; on a GPU it stays nn.Dropout's
    report = parameter_report(model)
    n_params, n_trainable = report["parameters"], report["trainable_parameters"]

    ckpt_dir = out / "checkpoints"
    args = _training_args(p, ckpt_dir, bf16)
    stash = _EvalStash(p)
    events = EventCallback(on_event, should_stop)
    callbacks: list[Any] = [RichProgressCallback(console, p.task.main_metric), events, _stash_callback(stash),
                            TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(out / "logs")))]
    if p.eval_enc is not None and c.early_stopping_patience and p.method.reload_best:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=c.early_stopping_patience))
    eval_features = p.eval_enc.features if p.eval_enc is not None else None
    encoder_scale = p.method.lr_scale if c.learning_rate is None else 1.0
    optimizer = build_optimizer(model, lr=p.hp["learning_rate"], weight_decay=c.weight_decay,
                                head_lr_multiplier=c.head_lr_multiplier, encoder_scale=encoder_scale,
                                layer_decay=c.layer_lr_decay, n_layers=n_layers)
    callbacks += p.method.trainer_callbacks(model)
    adversary = None
    if c.adversarial != "none":
        from tuneforge.training.adversarial import EmbeddingAdversary

        adversary = EmbeddingAdversary(model, c.adversarial, c.adversarial_epsilon, c.pgd_steps)
    distill = {"alpha": c.distill_alpha, "temperature": c.distill_temperature} if c.distill_from else None
    trainer = TuneforgeTrainer(model=model, args=args, train_dataset=train_features, eval_dataset=eval_features,
                               optimizers=(optimizer, None),
                               data_collator=p.task.collator(p.tokenizer), processing_class=p.tokenizer,
                               compute_metrics=stash.compute_metrics if eval_features else None, callbacks=callbacks,
                               adversary=adversary, distill=distill)
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    last = last_complete_checkpoint(ckpt_dir, console) if resume else None
    if resume and last is None:
        console.print("No checkpoint was saved before the interruption: training starts from the beginning.")
    console.print(f"Fine-tuning [bold]{p.base.name}[/] ({c.method}) for {c.task} on {len(p.train_ds)} examples "
                  f"({len(p.labels) if c.task != 'qa' else 'span'} labels), {n_trainable / 1e6:.2f}M of "
                  f"{n_params / 1e6:.2f}M parameters trainable, lr {p.hp['learning_rate']:g}, "
                  f"batch {p.hp['batch_size']}, {'bf16' if bf16 else 'fp32'}"
                  + (f", embeddings and the lower {p.hp['freeze_layers']} layers frozen" if p.hp["freeze_layers"]
                     else ""))
    with storage_errors(ckpt_dir):
        result = trainer.train(resume_from_checkpoint=last)
    if adversary is not None:
        adversary.remove()
    if events.stopped:
        console.print(f"Stopped on request at step {trainer.state.global_step}; resume with --resume.")
        return TrainResult(out, {}, None, interrupted=True)
    train_seconds = float(result.metrics.get("train_runtime", 0.0))

    # The dev report comes from the evaluation that chose the best checkpoint; re-run only if it is not at hand
    # (a resumed run whose best evaluation happened before the interruption).
    metrics = dev_name = None
    if p.eval_ds is not None and p.eval_enc is not None:
        best_step = _best_step(trainer)
        preds = stash.by_step.get(best_step) if best_step is not None else None
        if preds is None:
            from tuneforge.tasks.encoder import forward_features

            outputs = forward_features(trainer.model, p.eval_enc.features, p.task.collator(p.tokenizer),
                                       batch_size=c.eval_batch_size, bf16=bf16)
            preds = p.task.decode(outputs, p.eval_enc, p.eval_ds.examples, p.labels, multi_label=p.multi_label)
        dev_name = "eval-" + _safe_name(Path(p.eval_ds.path).stem)
        metrics = write_evaluation(out / dev_name, p.task, preds, p.eval_ds, p.labels,
                                   multi_label=p.multi_label, title=f"Dev evaluation of {out.name}")

    manifest = _manifest(p, out, bf16, metrics)
    manifest["resolved"]["encoder_learning_rate"] = p.hp["learning_rate"] * encoder_scale
    manifest["training"] = {
            "steps": trainer.state.global_step,
            "epochs": round(float(trainer.state.epoch or 0), 3),
            "train_seconds": round(train_seconds, 2),
            "train_examples_per_second": round(float(result.metrics.get("train_samples_per_second", 0.0)), 2),
            "wall_seconds": round(time.time() - t_start, 2),
            "final_loss": round(float(result.training_loss), 5),
            "best_step": _best_step(trainer),
            "stopped_early": trainer.state.global_step < trainer.state.max_steps,
            "parameters": n_params,
            "trainable_parameters": n_trainable,
            "trainable_share": round(n_trainable / max(1, n_params), 6),
    }
    _finalize(trainer.model, p.tokenizer, out, manifest, p.method, keep_checkpoints=c.keep_checkpoints)
    return TrainResult(out, manifest, metrics, stopped_early=manifest["training"]["stopped_early"])


def _manifest(p: _Prepared, out: Path, bf16: bool, metrics: dict[str, Any] | None) -> dict[str, Any]:
    c = p.config
    data: dict[str, Any] = {"train": _fingerprint(p.train_ds), **({"eval": _fingerprint(p.eval_ds)} if p.eval_ds
                                                                     else {})}
    if p.notes.get("augmented_rows"):
        data["train"]["augmented_rows"] = p.notes["augmented_rows"]
    if p.unlabeled:
        data["unlabeled"] = {"path": str(c.unlabeled_data), "texts": len(p.unlabeled)}
    return {
        "format_version": FORMAT_VERSION,
        "name": out.name,
        "task": c.task,
        "labels": p.labels if c.task != "qa" else [],
        "multi_label": p.multi_label,
        "max_length": p.hp["max_length"],
        "stride": c.stride,
        "base_model": {"name": p.base.name, "model_id": p.base.spec.model_id if p.base.spec else str(p.base.path),
                       "path": str(p.base.path),
                       **({"requested": p.notes["requested_base_model"], "note": p.notes["base_model_note"]}
                          if "base_model_note" in p.notes else {})},
        "method": c.method,
        "method_info": {},
        "config": c.to_json(),
        "resolved": {**p.hp, "precision": "bf16" if bf16 else "fp32"},
        "data": data,
        "metrics": {"dev": {k: v for k, v in (metrics or {}).items() if not isinstance(v, dict)}} if metrics else {},
        "versions": _versions(),
        "created_at": _now(),
    }


def _total_steps(n_features: int, batch_size: int, c: TrainConfig) -> int:
    import math

    per_epoch = math.ceil(n_features / max(1, batch_size * c.grad_accum))
    return max(1, int(math.ceil(per_epoch * c.epochs)))


def _with_teacher(p: _Prepared, console: Console) -> list[dict[str, Any]]:
    """Training features with the teacher's probabilities attached; unlabelled texts join with label -100."""
    from tuneforge.inference.predictor import load_predictor

    c = p.config
    assert c.distill_from is not None
    teacher = load_predictor(c.distill_from)
    if teacher.task.name != "classification" or sorted(teacher.labels) != sorted(p.labels):
        raise ConfigError(f"distill_from: {c.distill_from} predicts labels {teacher.labels}, the data has "
                          f"{p.labels}; the teacher must be a classifier over the same labels")
    extra = [{"text": t, "text_pair": None, "label": None} for t in p.unlabeled]
    with console.status(f"The teacher labels {len(p.train_ds) + len(extra)} texts..."):
        probs = teacher.predict_proba(list(p.train_ds.examples) + extra)
    order = [teacher.labels.index(lab) for lab in p.labels]
    probs = probs[:, order]
    features = [dict(f) for f in p.train_enc.features]
    if extra:
        enc = p.task.encode(extra, p.tokenizer, p.labels, max_length=p.hp["max_length"], with_labels=False)
        for f in enc.features:
            f["labels"] = -100
        features += enc.features
    for f, row in zip(features, probs, strict=True):
        f["teacher_probs"] = [float(x) for x in row]
    console.print(f"Distilling from {c.distill_from} on {len(p.train_ds)} labelled + {len(extra)} unlabelled texts "
                  f"(alpha {c.distill_alpha}, temperature {c.distill_temperature}).")
    return features


def _run_own_loop(p: _Prepared, out: Path, console: Console, *, bf16: bool, t_start: float) -> TrainResult:
    """Methods that train (or build) their model themselves (SetFit, zero-shot); evaluation and saving are shared."""
    from tuneforge.tasks.encoder import forward_features

    c = p.config
    assert p.method is not None
    console.print(f"{c.method}: [bold]{p.base.name}[/] for {c.task} on {len(p.train_ds)} examples "
                  f"({len(p.labels)} labels)")
    t0 = time.time()
    fit = p.method.fit(FitContext(config=c, task=p.task, base_path=p.base.path, labels=p.labels,
                                  train_examples=list(p.train_ds.examples), tokenizer=p.tokenizer, console=console,
                                  settings=None, unlabeled_texts=p.unlabeled))
    train_seconds = time.time() - t0
    metrics = None
    if p.eval_ds is not None and p.eval_enc is not None:
        outputs = forward_features(fit.model, p.eval_enc.features, p.task.collator(p.tokenizer),
                                   batch_size=c.eval_batch_size, bf16=bf16)
        preds = p.task.decode(outputs, p.eval_enc, p.eval_ds.examples, p.labels, multi_label=p.multi_label)
        metrics = write_evaluation(out / ("eval-" + _safe_name(Path(p.eval_ds.path).stem)), p.task, preds, p.eval_ds,
                                   p.labels, multi_label=p.multi_label, title=f"Dev evaluation of {out.name}")
    report = parameter_report(fit.model)
    manifest = _manifest(p, out, bf16, metrics)
    manifest["method_info"] = dict(fit.info)
    manifest["training"] = {"steps": fit.steps, "epochs": None, "train_seconds": round(train_seconds, 2),
                            "train_examples_per_second": round(len(p.train_ds) / max(train_seconds, 1e-9), 2),
                            "wall_seconds": round(time.time() - t_start, 2), "final_loss": fit.final_loss,
                            "best_step": None, "stopped_early": False, **report,
                            "trainable_share": round(report["trainable_parameters"] / max(1, report["parameters"]),
                                                     6)}
    _finalize(fit.model, p.tokenizer, out, manifest, p.method, keep_checkpoints=False)
    return TrainResult(out, manifest, metrics)


def _best_step(trainer: Any) -> int | None:
    best = trainer.state.best_model_checkpoint
    if not best:
        return None
    try:
        return int(Path(best).name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None


def _safe_name(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s) or "data"


def _finalize(model: Any, tokenizer: Any, out: Path, manifest: dict[str, Any], method: Method, *,
              keep_checkpoints: bool) -> None:
    """Write weights (the method's way) and tokenizer through a staging folder, then the manifest last: the run is
    complete exactly when ``tuneforge.json`` exists."""
    staging = out / ".final.partial"
    with storage_errors(out):
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        model.eval()  # e.g. P-tuning saves its prompt encoder's output, which must be computed without dropout
        saved = method.save(model, staging)
        manifest.setdefault("method_info", {}).update(saved)
        manifest["training"]["saved_bytes"] = saved.get("saved_bytes")
        tokenizer.save_pretrained(str(staging))
        for f in staging.iterdir():
            os.replace(f, out / f.name)
        staging.rmdir()
        atomic_write_json(out / MANIFEST, manifest)
        (out / RUN_CONFIG).unlink(missing_ok=True)
        if not keep_checkpoints:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
