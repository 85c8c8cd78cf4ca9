"""Domain-adaptive pretraining (Gururangan et al. 2020, "Don't Stop Pretraining"): continue masked-LM training of
a base model on unlabelled in-domain text. The output folder is a Hugging Face folder usable as ``--base-model``.

A share of the lines is held out and masked once with a fixed seed, so the masked-LM loss before and after
training is measured on exactly the same masked tokens; both are recorded in the folder's manifest
(``tuneforge.json``, written through :mod:`tuneforge.runs`).
"""

from __future__ import annotations

import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from tuneforge import runs
from tuneforge.errors import ConfigError, RunError
from tuneforge.settings import Settings
from tuneforge.training.setup import read_texts
from tuneforge.utils.fs import atomic_dir

__all__ = ["masked_lm_loss", "pretrain", "read_corpus"]


def read_corpus(path: Path) -> list[str]:
    """One text per non-empty line of a .txt file, or the text column of a data file."""
    return read_texts(path, option="data", at_least=2, purpose="pretraining")


def _check_options(*, epochs: float, learning_rate: float, batch_size: int, max_length: int,
                   mlm_probability: float, eval_share: float) -> None:
    """Every bad number at once, named by its option, before anything is loaded."""
    problems = []
    if not epochs > 0:
        problems.append(f"epochs: must be greater than 0 (got {epochs})")
    if not 0 < learning_rate < 1:
        problems.append(f"learning_rate: must be between 0 and 1 (got {learning_rate})")
    if batch_size < 1:
        problems.append(f"batch_size: must be 1 or more (got {batch_size})")
    if not 8 <= max_length <= 8192:
        problems.append(f"max_length: must be between 8 and 8192 tokens (got {max_length})")
    if not 0 < mlm_probability < 1:
        problems.append(f"mlm_probability: must be between 0 and 1 (got {mlm_probability})")
    if not 0 < eval_share < 1:
        problems.append(f"eval_share: must be between 0 and 1 (got {eval_share})")
    if problems:
        raise ConfigError(problems, hint="Fix these options and run `tuneforge pretrain` again.")


def _masked_eval_set(texts: list[str], tokenizer: Any, max_length: int, p: float, seed: int) -> list[dict[str, Any]]:
    import torch
    from transformers import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=p)
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    feats = [{"input_ids": ids} for ids in enc["input_ids"]]
    torch.manual_seed(seed)
    batch = collator(feats)
    out = []
    for i, f in enumerate(feats):
        n = len(f["input_ids"])
        out.append({"input_ids": batch["input_ids"][i][:n].tolist(), "labels": batch["labels"][i][:n].tolist()})
    return out


def masked_lm_loss(model: Any, features: list[dict[str, Any]], tokenizer: Any, batch_size: int = 32) -> float:
    """Mean loss over the masked tokens of pre-masked features (the same masks every time)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for b in range(0, len(features), batch_size):
            chunk = features[b: b + batch_size]
            n = max(len(f["input_ids"]) for f in chunk)
            ids = torch.full((len(chunk), n), tokenizer.pad_token_id)
            labels = torch.full((len(chunk), n), -100)
            mask = torch.zeros((len(chunk), n), dtype=torch.long)
            for i, f in enumerate(chunk):
                k = len(f["input_ids"])
                ids[i, :k] = torch.tensor(f["input_ids"])
                labels[i, :k] = torch.tensor(f["labels"])
                mask[i, :k] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits
            loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)).float(), labels.view(-1),
                                                     ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((labels != -100).sum())
    return total / max(1, count)


def pretrain(*, data: Path, base_model: str, output: Path, epochs: float = 1.0, learning_rate: float = 5e-5,
             batch_size: int = 16, max_length: int = 128, mlm_probability: float = 0.15, eval_share: float = 0.1,
             seed: int = 42, overwrite: bool = False, settings: Settings | None = None,
             console: Console | None = None) -> dict[str, Any]:
    """Continue masked-LM training of ``base_model`` on ``data``; returns the manifest written to ``output``."""
    from transformers import (
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
        set_seed,
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from tuneforge.evaluation.card import write_card
    from tuneforge.training.callbacks import RichProgressCallback
    from tuneforge.training.dropout import use_fast_dropout
    from tuneforge.training.hardware import hardware_summary
    from tuneforge.utils.hf import quiet_transformers

    settings = settings or Settings()
    console = console or Console(stderr=True)
    output = Path(output)
    _check_options(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, max_length=max_length,
                   mlm_probability=mlm_probability, eval_share=eval_share)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise RunError(f"{output} already exists.", hint="Choose another --output, or pass --overwrite.")
    texts = read_corpus(data)
    base = runs.resolve_base_model(base_model, settings.cache_dir)
    quiet_transformers()
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base.path))
    model = AutoModelForMaskedLM.from_pretrained(str(base.path), use_safetensors=True, trust_remote_code=False)
    use_fast_dropout(model)
    rng = random.Random(seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    n_eval = max(1, int(round(eval_share * len(texts))))
    held_out = [texts[i] for i in order[:n_eval]]
    train_texts = [texts[i] for i in order[n_eval:]]
    eval_set = _masked_eval_set(held_out, tokenizer, max_length, mlm_probability, seed)
    before = masked_lm_loss(model, eval_set, tokenizer)
    console.print(f"Pretraining {base.name} on {len(train_texts)} texts; held-out masked-LM loss before: "
                  f"{before:.4f} ({len(held_out)} texts)")
    enc = tokenizer(train_texts, truncation=True, max_length=max_length)
    feats = [{"input_ids": ids} for ids in enc["input_ids"]]
    t0 = time.time()
    with atomic_dir(output, overwrite=overwrite) as tmp:
        args = TrainingArguments(output_dir=str(tmp / "checkpoints"), num_train_epochs=epochs,
                                 learning_rate=learning_rate, per_device_train_batch_size=batch_size,
                                 warmup_steps=0.06, weight_decay=0.01, seed=seed, save_strategy="no",
                                 report_to=[], disable_tqdm=True, logging_steps=50, use_cpu=True,
                                 dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=feats, processing_class=tokenizer,
                          data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability),
                          callbacks=[RichProgressCallback(console, "loss")])
        trainer.remove_callback(PrinterCallback)  # a Rich progress bar instead of printed dicts
        trainer.remove_callback(ProgressCallback)
        trainer.train()
        after = masked_lm_loss(model, eval_set, tokenizer)
        shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        manifest = {
            "format_version": runs.FORMAT_VERSION, "name": output.name, "task": "masked-lm", "method": "pretrain",
            "base_model": {"name": base.name, "model_id": base.spec.model_id if base.spec else str(base.path)},
            "data": {"path": str(data), "train_texts": len(train_texts), "held_out_texts": len(held_out)},
            "pretrain": {"eval_loss_before": round(before, 5), "eval_loss_after": round(after, 5),
                         "eval_perplexity_before": round(math.exp(min(before, 50)), 3),
                         "eval_perplexity_after": round(math.exp(min(after, 50)), 3),
                         "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size,
                         "mlm_probability": mlm_probability, "steps": trainer.state.global_step,
                         "train_seconds": round(time.time() - t0, 2)},
            "usage": f"tuneforge train --base-model {output} ...",
        }
        manifest["hardware"] = hardware_summary()
        runs.write_manifest(tmp, manifest)
        write_card(tmp, manifest)  # the model card (README.md)
    console.print(f"Held-out masked-LM loss after: {after:.4f} (before {before:.4f})")
    return manifest
