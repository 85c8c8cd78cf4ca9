"""The fine-tuning recipe: setup → train → evaluate → save, on transformers' ``Trainer``.

:func:`train` reads like the run: check the output folder, :func:`~tuneforge.training.setup.prepare` everything
(data, base model, auto knobs, features: nothing is written until it all passed), start the run folder, train
(the method's own loop or the Trainer), write the dev report, and finish the folder through
:func:`tuneforge.runs.finalize_run` (the manifest last). While training, the folder holds the run configuration
and ``checkpoints/`` so that a killed run continues with ``resume=True``; a run that fails before its first
checkpoint leaves nothing behind.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from tuneforge import runs
from tuneforge.errors import ConfigError, RunError
from tuneforge.evaluation.card import write_card
from tuneforge.methods import FitContext, Method, parameter_report
from tuneforge.settings import Settings
from tuneforge.training.callbacks import EventCallback, RichProgressCallback
from tuneforge.training.config import TrainConfig, make_config
from tuneforge.training.dev_eval import EvalStash, best_step, dev_predictions, stash_callback, write_dev_report
from tuneforge.training.hardware import hardware_summary, use_bf16
from tuneforge.training.manifest import build_manifest, now, training_summary
from tuneforge.training.optim import build_optimizer, freeze_lower_layers
from tuneforge.training.setup import Prepared, prepare, total_steps
from tuneforge.training.warm_start import warm_start_classifier
from tuneforge.utils.fs import storage_errors
from tuneforge.utils.hf import quiet_transformers

__all__ = ["TrainResult", "saved_config", "train"]


@dataclass
class TrainResult:
    output: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any] | None
    stopped_early: bool = False
    interrupted: bool = False


def saved_config(output: Path) -> TrainConfig:
    """The configuration an unfinished run in ``output`` was started with (what ``resume`` continues)."""
    if not runs.has_run_config(output):
        raise RunError(f"{output} holds no interrupted run to resume.", hint="Start a new run without --resume.")
    saved = runs.read_run_config(output).get("config")
    if not isinstance(saved, dict):
        raise RunError(f"{runs.RUN_CONFIG} in {output} holds no configuration: the file was damaged.",
                       hint="Start the run again with --overwrite.")
    return make_config(saved, f"{runs.RUN_CONFIG} in {output}")


def _check_output(out: Path, *, resume: bool, overwrite: bool) -> None:
    if runs.has_manifest(out) and not overwrite:
        raise RunError(f"{out} already holds a trained model.",
                       hint="Choose another --output, or pass --overwrite to replace it.")
    if resume:
        saved_config(out)  # raises if there is nothing to resume
        return
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = "an interrupted run" if runs.has_run_config(out) else "other files"
        raise RunError(f"{out} already exists and holds {what}.",
                       hint="Pass --resume to continue an interrupted run, --overwrite to start over, "
                            "or choose another --output.")


def train(config: TrainConfig, *, settings: Settings | None = None, resume: bool = False, overwrite: bool = False,
          console: Console | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
          should_stop: Callable[[], bool] | None = None, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Fine-tune ``config.base_model`` on ``config.data`` and write a self-contained model folder.

    ``on_event`` receives training logs (loss, learning rate, dev metrics); ``should_stop`` is polled every step
    and ends training early with a checkpoint to resume from (cancel or pause from a job queue); ``callbacks`` are
    more Trainer callbacks (a Ray Train worker's reporting, :mod:`tuneforge.training.distributed`).
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
    _check_data_fits_method(p)
    created = _start_run_folder(out, config, resume=resume, overwrite=overwrite)
    try:
        return _run(p, out, console, resume=resume, on_event=on_event, should_stop=should_stop, t_start=t_start,
                    extra_callbacks=callbacks)
    except KeyboardInterrupt:
        console.print(f"[yellow]Interrupted.[/] Continue later with: tuneforge train --resume --output {out}")
        raise
    except Exception:
        if not resume:
            _discard_unresumable(out, created=created)
        raise


def _start_run_folder(out: Path, config: TrainConfig, *, resume: bool, overwrite: bool) -> bool:
    """Create (or, with ``overwrite``, re-create) the run folder and record its configuration; returns whether
    this call created the folder."""
    with storage_errors(out):
        if overwrite and out.exists() and not resume:
            shutil.rmtree(out)
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            runs.write_run_config(out, {"config": config.to_json(), "started_at": now()})
    return created


def _discard_unresumable(out: Path, *, created: bool) -> None:
    """After a failure: a run with no complete checkpoint cannot be resumed, so nothing of it stays (the folder
    itself goes too when this run created it). One with a checkpoint is kept for ``--resume``."""
    if runs.complete_checkpoints(runs.checkpoints_dir(out)):
        return
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir() if out.is_dir() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _prepare(config: TrainConfig, settings: Settings, console: Console) -> Prepared:
    """:func:`prepare`, and with ``--oos-label`` a dev file that may hold that label though no training example
    does (the out-of-scope examples a reject option is fitted on): the run is prepared without its dev file, which
    is then read with the label allowed. Its out-of-scope examples count in no loss (the head has no class for
    them)."""
    oos = config.oos_label
    if oos is None or config.eval_data is None:
        p = prepare(config, settings, console)
    else:
        from tuneforge.data import ColumnMap
        from tuneforge.tasks import load_dataset

        p = prepare(config.model_copy(update={"eval_data": None}), settings, console)
        c = p.config = p.config.model_copy(update={"eval_data": config.eval_data})
        allowed = p.train_ds.labels if oos in p.train_ds.labels else [*p.train_ds.labels, oos]
        p.eval_ds = load_dataset(config.eval_data, p.task.name, require_labels=True, label_set=allowed,
                                 columns=ColumnMap(**c.columns.model_dump()), multi_label=p.multi_label,
                                 label_separator=c.label_separator, delimiter=c.delimiter, encoding=c.encoding)
        if c.mask_pii:  # as prepare masks a dev file it reads itself
            from tuneforge.data.pii import PiiDetector, mask_dataset

            p.eval_ds, found = mask_dataset(p.eval_ds, PiiDetector())
            p.notes.setdefault("pii_masked", {})["eval"] = dict(found.counts)
        p.eval_enc = p.task.encode(p.eval_ds.examples, p.tokenizer, p.labels, max_length=p.hp["max_length"],
                                   stride=c.stride, multi_label=p.multi_label)
    if p.multi_label and config.wants_confidence():
        raise ConfigError("oos_label, reject, calibrate: apply to single-label classification; the data is "
                          "multi-label", hint="leave these options out for multi-label data")
    return p


def _with_confidence(p: Prepared, model: Any,
                     preds: list[dict[str, Any]] | None) -> tuple[Prepared, list[dict[str, Any]] | None]:
    """With ``--oos-label``, ``--reject`` or ``--calibrate``: the calibration and reject option fitted on the final
    model's dev outputs, the run's task bound to them (the manifest records them) and the dev predictions they
    give; the run and ``preds`` unchanged otherwise. The outputs are computed in fp32, as the model is served: a
    threshold fitted on bf16 logits sits off by their rounding."""
    from tuneforge.tasks.encoder import forward_features

    c = p.config
    fit = getattr(p.task, "fit_confidence", None)
    if fit is None or not c.wants_confidence():
        return p, preds
    outputs: list[Any] = []
    examples: list[dict[str, Any]] = []
    if p.eval_enc is not None and p.eval_ds is not None:
        outputs = forward_features(model, p.eval_enc.features, p.task.collator(p.tokenizer),
                                   batch_size=c.eval_batch_size, bf16=False)
        examples = list(p.eval_ds.examples)
    confidence = fit(outputs, examples, p.labels, oos_label=c.oos_label, reject=c.reject,
                     target=c.reject_target, calibrate=c.calibrate and bool(outputs))
    bound = replace(p, task=p.task.with_confidence(confidence))  # type: ignore[attr-defined]  # classification
    if p.eval_enc is not None and outputs:
        preds = bound.task.decode(outputs, p.eval_enc, examples, p.labels, multi_label=p.multi_label)
    return bound, preds


def _report_and_manifest(p: Prepared, model: Any, preds: list[dict[str, Any]] | None, out: Path, *,
                         bf16: bool) -> tuple[Prepared, dict[str, Any] | None, dict[str, Any]]:
    """After training, every loop alike: the confidence policy fitted (:func:`_with_confidence`), the dev report
    from ``preds`` (the predictions of the evaluation that chose the model; computed again when not at hand) and
    the run's manifest; returns the run (bound to its policy), the dev metrics and the manifest."""
    p, preds = _with_confidence(p, model, preds)
    metrics = None
    if p.eval_ds is not None and p.eval_enc is not None:
        if preds is None:
            preds = dev_predictions(p, model, batch_size=p.config.eval_batch_size, bf16=bf16)
        metrics = write_dev_report(p, out, preds)
    manifest = build_manifest(p, out, bf16, metrics)
    manifest.update(_run_record(p))
    return p, metrics, manifest


def _run_record(p: Prepared) -> dict[str, Any]:
    """What the run's bound task adds to the manifest (a classifier's calibration and reject option)."""
    record = getattr(p.task, "run_manifest", None)
    return record() if record is not None else {}


def _check_data_fits_method(p: Prepared) -> None:
    """A task with several kinds of data (generation: conversations, preference pairs) refuses a file the method
    does not train on, naming the method that fits, before anything is written."""
    check = getattr(p.task, "check_method_data", None)
    if check is None or p.method is None:
        return
    for ds in (p.train_ds, p.eval_ds):
        if ds is not None:
            check(ds, method=p.config.method, preference=p.method.preference)


def _build_model(p: Prepared, console: Console) -> Any:
    """The task model on the base encoder, with frozen parts and a warm-started head as configured (before the
    method makes it trainable its way)."""
    c = p.config
    model_kwargs: dict[str, Any] = {}
    if c.dropout is not None:
        model_kwargs.update(hidden_dropout_prob=c.dropout, attention_probs_dropout_prob=c.dropout)
    model = p.task.build_model(p.base.path, p.labels, multi_label=p.multi_label, **model_kwargs)
    if c.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if p.hp["freeze_layers"]:
        freeze_lower_layers(model, p.hp["freeze_layers"])
    if c.warm_start_head and p.task.sequence_level:
        probe_loss = warm_start_classifier(model, p.train_enc.features, p.task.collator(p.tokenizer),
                                           multi_label=p.multi_label, seed=c.seed)
        if probe_loss is not None:
            console.print(f"Warm-started the classification head (probe loss {probe_loss:.3f}).")
    return model


def _run(p: Prepared, out: Path, console: Console, *, resume: bool,
         on_event: Callable[[dict[str, Any]], None] | None, should_stop: Callable[[], bool] | None,
         t_start: float, extra_callbacks: Sequence[Any] = ()) -> TrainResult:
    from torch.utils.tensorboard import SummaryWriter
    from transformers import EarlyStoppingCallback, set_seed
    from transformers.integrations import TensorBoardCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from tuneforge.training.dropout import use_fast_dropout
    from tuneforge.training.trainer import TuneforgeTrainer

    c = p.config
    quiet_transformers()
    set_seed(c.seed)
    bf16 = use_bf16(c.precision)
    assert p.method is not None
    method = p.method
    if p.method.own_loop:
        return _run_own_loop(p, out, console, bf16=bf16, t_start=t_start)
    if c.dp_epsilon is not None:  # DP-SGD: Opacus samples, clips and noises in its own loop
        return _run_private(p, out, console, resume=resume, on_event=on_event, should_stop=should_stop,
                            t_start=t_start)
    model = _build_model(p, console)
    n_layers = int(getattr(model.config, "num_hidden_layers", 0))
    model = p.method.prepare(model, c, p.task, total_steps=total_steps(len(p.train_features), p.hp["batch_size"], c))
    use_fast_dropout(model)  # torch's CPU dropout mask costs a tenth of a step; on a GPU it stays nn.Dropout's
    report = parameter_report(model)
    train_features = p.train_features
    eval_features = p.eval_enc.features if p.eval_enc is not None else None
    preference = None
    if p.method.preference:  # DPO: the reference's log-probabilities once, then the preference loss on pairs
        preference = p.task.preference_loss(model, p.tokenizer)  # type: ignore[attr-defined]  # generation only
        with console.status("Scoring the pairs with the reference model..."):
            train_features = preference.with_reference_logps(model, train_features, batch_size=c.eval_batch_size,
                                                             bf16=bf16)
            if eval_features:
                eval_features = preference.with_reference_logps(model, eval_features,
                                                                batch_size=c.eval_batch_size, bf16=bf16)

    ckpt_dir = runs.checkpoints_dir(out)
    stash = EvalStash(p)
    events = EventCallback(on_event, should_stop)
    callbacks: list[Any] = [RichProgressCallback(console, p.task.main_metric), events, stash_callback(stash),
                            TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(out / "logs")))]
    if p.eval_enc is not None and c.early_stopping_patience and p.method.reload_best:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=c.early_stopping_patience))
    encoder_scale = p.method.lr_scale if c.learning_rate is None else 1.0
    optimizer = build_optimizer(model, lr=p.hp["learning_rate"], weight_decay=c.weight_decay,
                                head_lr_multiplier=c.head_lr_multiplier, encoder_scale=encoder_scale,
                                layer_decay=c.layer_lr_decay, n_layers=n_layers)
    callbacks += [*p.method.trainer_callbacks(model), *extra_callbacks]
    adversary = None
    if c.adversarial != "none":
        from tuneforge.training.adversarial import EmbeddingAdversary

        adversary = EmbeddingAdversary(model, c.adversarial, c.adversarial_epsilon, c.pgd_steps)
    distill = {"alpha": c.distill_alpha, "temperature": c.distill_temperature} if c.distill_from else None
    # packing (generation only, checked by the config) makes padding-free batches; pairs batch their own way
    collator = (preference.collator if preference is not None else
                p.task.collator(p.tokenizer, packing=True) if c.packing  # type: ignore[call-arg]  # generation only
                else p.task.collator(p.tokenizer))
    # a generative task is evaluated on its token metrics from the logits, reduced batch by batch
    reduce_logits = getattr(p.task, "preprocess_logits", None) if p.task.generative and eval_features else None
    trainer = TuneforgeTrainer(model=model, args=_training_args(p, ckpt_dir, bf16), train_dataset=train_features,
                               eval_dataset=eval_features, optimizers=(optimizer, None),
                               data_collator=collator, processing_class=p.tokenizer,
                               compute_metrics=stash.compute_metrics if eval_features else None, callbacks=callbacks,
                               adversary=adversary, distill=distill, preprocess_logits_for_metrics=reduce_logits,
                               preference=preference,
                               train_loss=getattr(p.task, "training_loss", None) if c.adversarial == "none" else None)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    last = None
    if resume:
        last = runs.last_complete_checkpoint(
            ckpt_dir, on_remove=lambda d: console.print(f"Removing {d.name}: the run was stopped while writing it."))
        if last is None:
            console.print("No checkpoint was saved before the interruption: training starts from the beginning.")
    n_params, n_trainable = report["parameters"], report["trainable_parameters"]
    labels_note = "" if p.task.generative else f" ({len(p.labels) if p.task.labelled else 'span'} labels)"
    console.print(f"Fine-tuning [bold]{p.base.name}[/] ({c.method}) for {c.task} on {len(p.train_ds)} examples"
                  f"{labels_note}, {n_trainable / 1e6:.2f}M of "
                  f"{n_params / 1e6:.2f}M parameters trainable, lr {p.hp['learning_rate'] * encoder_scale:g}, "
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

    # The dev report comes from the evaluation that chose the best checkpoint; re-run only if it is not at hand
    # (a resumed run whose best evaluation happened before the interruption).
    best = best_step(trainer)
    preds = stash.by_step.get(best) if best is not None else None
    p, metrics, manifest = _report_and_manifest(p, trainer.model, preds, out, bf16=bf16)
    if p.task.generative:
        manifest["chat_template"] = getattr(p.tokenizer, "chat_template", None)
    manifest["resolved"]["encoder_learning_rate"] = p.hp["learning_rate"] * encoder_scale
    manifest["training"] = training_summary(
        steps=trainer.state.global_step, epochs=round(float(trainer.state.epoch or 0), 3),
        train_seconds=float(result.metrics.get("train_runtime", 0.0)),
        examples_per_second=float(result.metrics.get("train_samples_per_second", 0.0)),
        wall_seconds=time.time() - t_start, final_loss=round(float(result.training_loss), 5), best_step=best,
        stopped_early=trainer.state.global_step < trainer.state.max_steps, **report)
    if preference is not None:
        manifest["training"]["preference"] = {"beta": preference.beta, **trainer.preference_summary(best)}
    _finalize(trainer.model, p.tokenizer, out, manifest, method, keep_checkpoints=c.keep_checkpoints)
    return TrainResult(out, manifest, metrics, stopped_early=manifest["training"]["stopped_early"])


def _run_private(p: Prepared, out: Path, console: Console, *, resume: bool,
                 on_event: Callable[[dict[str, Any]], None] | None, should_stop: Callable[[], bool] | None,
                 t_start: float) -> TrainResult:
    """Differentially private training (``--dp-epsilon``): the task model, method and optimizer as in :func:`_run`,
    trained with DP-SGD by :func:`~tuneforge.training.privacy.train_private`; the dev report, manifest (with its
    ``privacy`` section) and saving are every run's. Training is in fp32 and keeps no checkpoints."""
    from tuneforge.training.privacy import freeze_for_privacy, train_private

    c = p.config
    assert p.method is not None
    method = p.method
    if resume:
        raise RunError("A differentially private run cannot be resumed: it keeps no checkpoints, and its privacy "
                       "accounting covers one uninterrupted run.", hint="Start it again with --overwrite.")
    model = _build_model(p, console)
    n_layers = int(getattr(model.config, "num_hidden_layers", 0))
    model = method.prepare(model, c, p.task, total_steps=total_steps(len(p.train_features), p.hp["batch_size"], c))
    freeze_for_privacy(model)
    report = parameter_report(model)
    encoder_scale = method.lr_scale if c.learning_rate is None else 1.0
    optimizer = build_optimizer(model, lr=p.hp["learning_rate"], weight_decay=c.weight_decay,
                                head_lr_multiplier=c.head_lr_multiplier, encoder_scale=encoder_scale,
                                layer_decay=c.layer_lr_decay, n_layers=n_layers)
    console.print(f"Fine-tuning [bold]{p.base.name}[/] ({c.method}) for {c.task} on {len(p.train_ds)} examples "
                  f"with differential privacy, {report['trainable_parameters'] / 1e6:.2f}M of "
                  f"{report['parameters'] / 1e6:.2f}M parameters trainable, lr "
                  f"{p.hp['learning_rate'] * encoder_scale:g}, expected batch {p.hp['batch_size']}, fp32")
    run = train_private(p, model, optimizer, console=console, on_event=on_event, should_stop=should_stop)
    if run.interrupted:
        console.print(f"Stopped on request at step {run.steps}; a private run cannot be resumed.")
        return TrainResult(out, {}, None, interrupted=True)
    p, metrics, manifest = _report_and_manifest(p, run.model, run.preds, out, bf16=False)
    manifest["resolved"]["encoder_learning_rate"] = p.hp["learning_rate"] * encoder_scale
    manifest["privacy"] = run.privacy
    manifest["training"] = training_summary(
        steps=run.steps, epochs=run.epochs, train_seconds=run.train_seconds,
        examples_per_second=run.steps * p.hp["batch_size"] / max(run.train_seconds, 1e-9),
        wall_seconds=time.time() - t_start, final_loss=run.final_loss, best_step=run.best_step,
        stopped_early=run.stopped_early, **report)
    _finalize(run.model, p.tokenizer, out, manifest, method, keep_checkpoints=False)
    return TrainResult(out, manifest, metrics, stopped_early=run.stopped_early)


def _run_own_loop(p: Prepared, out: Path, console: Console, *, bf16: bool, t_start: float) -> TrainResult:
    """Methods that train (or build) their model themselves (SetFit, zero-shot); evaluation and saving are shared."""
    c = p.config
    assert p.method is not None
    method = p.method
    console.print(f"{c.method}: [bold]{p.base.name}[/] for {c.task} on {len(p.train_ds)} examples "
                  f"({len(p.labels)} labels)")
    t0 = time.time()
    fit = p.method.fit(FitContext(config=c, task=p.task, base_path=p.base.path, labels=p.labels,
                                  train_examples=list(p.train_ds.examples), tokenizer=p.tokenizer, console=console,
                                  settings=None, unlabeled_texts=p.unlabeled))
    train_seconds = time.time() - t0
    p, metrics, manifest = _report_and_manifest(p, fit.model, None, out, bf16=bf16)
    manifest["method_info"] = dict(fit.info)
    manifest["training"] = training_summary(
        steps=fit.steps, epochs=None, train_seconds=train_seconds,
        examples_per_second=len(p.train_ds) / max(train_seconds, 1e-9), wall_seconds=time.time() - t_start,
        final_loss=fit.final_loss, best_step=None, stopped_early=False, **parameter_report(fit.model))
    _finalize(fit.model, p.tokenizer, out, manifest, method, keep_checkpoints=False)
    return TrainResult(out, manifest, metrics)


def _finalize(model: Any, tokenizer: Any, out: Path, manifest: dict[str, Any], method: Method, *,
              keep_checkpoints: bool) -> None:
    """Weights (the method's way) and tokenizer go into the run folder, then the manifest, last."""

    def write_files(staging: Path) -> dict[str, Any]:
        model.eval()  # e.g. P-tuning saves its prompt encoder's output, which must be computed without dropout
        saved = method.save(model, staging)
        manifest["training"]["saved_bytes"] = saved.get("saved_bytes")
        tokenizer.save_pretrained(str(staging))
        # the model card (README.md, over any a library wrote) from the manifest and the dev report
        manifest.setdefault("hardware", hardware_summary())
        write_card(out, {**manifest, "method_info": {**manifest.get("method_info", {}), **saved}}, dest=staging)
        return saved

    runs.finalize_run(out, manifest, write_files, keep_checkpoints=keep_checkpoints)


def _training_args(p: Prepared, ckpt_dir: Path, bf16: bool) -> Any:
    import torch
    from transformers import TrainingArguments

    c = p.config
    has_eval = p.eval_enc is not None
    reload_best = p.method is None or p.method.reload_best
    strategy = "steps" if c.eval_every else "epoch"
    return TrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=p.hp["epochs"],  # resolved by prepare (a number for epochs: auto)
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
        greater_is_better=getattr(p.task, "greater_is_better", True),
        logging_steps=c.logging_steps,
        logging_first_step=True,
        # Trainer drops every feature the model's forward() does not name; the teacher's probabilities are no
        # model input, and without this distillation silently trained on the hard labels alone (as would DPO's
        # rejected answers and reference log-probabilities)
        remove_unused_columns=c.distill_from is None and not (p.method is not None and p.method.preference),
        report_to=[],
        disable_tqdm=True,
        train_sampling_strategy="group_by_length",
        dataloader_num_workers=0,
        activation_checkpointing=c.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
        activation_checkpointing_kwargs={"use_reentrant": False} if c.gradient_checkpointing else None,
        save_only_model=False,
        include_for_metrics=["inputs"] if has_eval else [],
    )
