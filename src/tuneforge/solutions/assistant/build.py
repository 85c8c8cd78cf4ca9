"""Build a bundle from files: import the knowledge base, fine-tune the intent classifier on past tickets (the
normal TuneForge recipe), calibrate the handover threshold on held-out tickets, index the passages, and add the
writer of generated answers when one is given."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tuneforge.errors import ConfigError
from tuneforge.solutions.assistant.assistant import (
    Assistant,
    AssistantConfig,
    EncoderResolver,
    build_bundle,
    calibrate_threshold,
    encoder_resolver,
    set_writer,
)
from tuneforge.solutions.assistant.knowledge import Passage, load_knowledge
from tuneforge.tasks import load_dataset, split_dataset, write_dataset
from tuneforge.utils.fs import atomic_dir, atomic_write_json, storage_errors

__all__ = ["BuildOptions", "build_assistant", "ticket_passages"]


@dataclass
class BuildOptions:
    """What ``tuneforge solution assistant build`` takes."""

    output: Path
    knowledge: Sequence[Path] = ()
    tickets: Path | None = None
    dev: Path | None = None
    base_model: str = "minilm"
    epochs: float = 2.0
    batch_size: int | None = None
    learning_rate: float | None = None
    index_tickets: bool = True
    target_precision: float = 0.95
    threshold: float | None = None
    similarity_quantile: float = 0.02
    config: dict[str, Any] | None = None
    qa_run: Path | None = None
    #: a generation run folder or a base chat model: writes generated answers (answer mode ``generate``)
    writer: str | None = None
    overwrite: bool = False
    seed: int = 42


def ticket_passages(rows: Sequence[dict[str, Any]], source: str = "tickets") -> list[Passage]:
    """Past tickets as retrievable passages: a new message close to an old one gets the old one's intent."""
    return [Passage(id=f"{source}:{i + 1}", text=str(r["text"]), answer="", title="", intent=str(r["label"]),
                    source=source, kind="ticket") for i, r in enumerate(rows)]


def build_assistant(opts: BuildOptions, *, settings: Any = None, console: Console | None = None,
                    resolve_encoder: EncoderResolver | None = None) -> dict[str, Any]:
    """Build the bundle at ``opts.output``; returns a summary (passages, labels, threshold, dev accuracy)."""
    from tuneforge.training.config import make_config
    from tuneforge.training.recipe import train

    console = console or Console(stderr=True)
    problems = []
    if not opts.knowledge and opts.tickets is None:
        problems.append("kb/tickets: give a knowledge base (--kb), past tickets (--tickets) or both")
    if not 0 <= opts.similarity_quantile < 0.5:
        problems.append(f"similarity_quantile: must be in [0, 0.5), got {opts.similarity_quantile}")
    if not 0 < opts.target_precision <= 1:
        problems.append(f"target_precision: must be in (0, 1], got {opts.target_precision}")
    if opts.output.exists() and not opts.overwrite:
        problems.append(f"output: {opts.output} exists (pass --overwrite to replace it)")
    if problems:
        raise ConfigError(problems)
    config = AssistantConfig.parse(opts.config or {})
    resolve = resolve_encoder or encoder_resolver(settings)
    passages: list[Passage] = load_knowledge(list(opts.knowledge)) if opts.knowledge else []
    summary: dict[str, Any] = {"knowledge_passages": len(passages)}
    with storage_errors(opts.output):
        opts.output.parent.mkdir(parents=True, exist_ok=True)
    # the work folder sits beside the output, so the finished bundle is renamed into place, not copied
    with tempfile.TemporaryDirectory(prefix=f".{opts.output.name}.build-", dir=opts.output.parent) as work:
        intent_run: Path | None = None
        if opts.tickets is not None:
            ds = load_dataset(opts.tickets, "classification", require_labels=True, min_classes=2)
            if opts.dev is not None:
                dev_ds = load_dataset(opts.dev, "classification", require_labels=True, label_set=ds.labels)
                train_ds = ds
            else:
                parts = split_dataset(ds, dev=0.1, test=0.0, seed=opts.seed)
                train_ds, dev_ds = parts["train"], parts["dev"]
            train_path, dev_path = Path(work) / "train.jsonl", Path(work) / "dev.jsonl"
            write_dataset(train_ds, train_path)
            write_dataset(dev_ds, dev_path)
            cfg = make_config({"task": "classification", "data": train_path, "eval_data": dev_path,
                               "output": Path(work) / "intent", "base_model": opts.base_model,
                               "epochs": opts.epochs, "batch_size": opts.batch_size,
                               "learning_rate": opts.learning_rate, "seed": opts.seed}, "the build options")
            console.print(f"Training the intent classifier on {len(train_ds)} tickets "
                          f"({len(train_ds.labels)} intents, {len(dev_ds)} held out for calibration)...")
            result = train(cfg, settings=settings, console=console)
            intent_run = result.output
            if opts.index_tickets:
                passages += ticket_passages([{"text": e["text"], "label": e["label"]} for e in train_ds.examples])
            summary.update(intents=len(train_ds.labels), train_tickets=len(train_ds), dev_tickets=len(dev_ds))
        # a first bundle to calibrate on (same encoder, same passages), then the final one with the threshold
        staging = Path(work) / "bundle"
        build_bundle(staging, passages=passages, config=config, intent_run=intent_run, qa_run=opts.qa_run,
                     resolve_encoder=resolve, progress=lambda m: console.print(m))
        if opts.threshold is not None:
            config.threshold = opts.threshold
            summary["threshold_source"] = "given"
        elif opts.tickets is not None:
            assistant = Assistant.load(staging, resolve_encoder=resolve, config=config)
            rows = [{"text": e["text"], "label": e["label"]} for e in dev_ds.examples]
            preds = assistant.classify([r["text"] for r in rows])
            config.threshold = calibrate_threshold([p[1] for p in preds],
                                                   [p[0] == r["label"] for p, r in zip(preds, rows, strict=True)],
                                                   target_precision=opts.target_precision)
            summary.update(threshold_source=f"dev precision ≥ {opts.target_precision}",
                           dev_accuracy=round(sum(p[0] == r["label"] for p, r in zip(preds, rows, strict=True))
                                              / max(1, len(rows)), 4))
            if opts.similarity_quantile > 0 and "min_similarity" not in (opts.config or {}):
                # a dev message is scored against the training tickets only, like a new customer message
                scores, _ = assistant.retrieve([r["text"] for r in rows], 1)
                q = float(np.quantile(scores[:, 0], opts.similarity_quantile))
                config.min_similarity = round(min(1.0, max(-1.0, q)), 6)  # float16 storage: |cos| may pass 1
                summary["min_similarity_source"] = f"{opts.similarity_quantile:g} quantile of dev similarity"
        info_path = staging / "assistant.json"
        info = json.loads(info_path.read_text(encoding="utf-8"))
        info["config"] = config.model_dump(mode="json")
        if opts.writer is not None:
            summary["writer"] = opts.writer
        info["build"] = summary
        atomic_write_json(info_path, info)
        if opts.writer is not None:
            config = AssistantConfig.parse(set_writer(staging, opts.writer))
        with atomic_dir(opts.output, overwrite=opts.overwrite) as final:
            final.rmdir()
            staging.rename(final)
    summary.update(output=str(opts.output), passages=len(passages), threshold=config.threshold,
                   min_similarity=config.min_similarity)
    return summary
