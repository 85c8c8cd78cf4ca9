"""``tuneforge evaluate`` and ``tuneforge predict``: use a finished run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tuneforge.cli.options import (
    AnswersCol,
    ContextCol,
    LabelCol,
    PairCol,
    QuestionCol,
    TagsCol,
    TextCol,
    TokensCol,
    column_map,
    err,
    offline,
    out,
    print_metrics,
)
from tuneforge.errors import ConfigError

__all__ = ["evaluate", "predict"]

BatchOpt = Annotated[int, typer.Option(min=1, help="Examples per forward pass.")]


def check_run(run: Path) -> dict[str, Any]:
    """The run folder's validated manifest: a damaged or edited folder is refused before anything loads."""
    from tuneforge.runs import read_manifest

    return read_manifest(run)


def evaluate(
    run: Annotated[Path, typer.Argument(help="A trained model folder (the --output of train).")],
    data: Annotated[Path, typer.Option(help="Labelled data to evaluate on.")],
    name: Annotated[str | None, typer.Option(help="Report folder name: eval-<name> (default: the file's name).")]
    = None,
    batch_size: BatchOpt = 64,
    lenient_bio: Annotated[bool, typer.Option(help="NER: read a stray I-X as the start of an entity.")] = False,
    text_column: TextCol = None, text_pair_column: PairCol = None, label_column: LabelCol = None,
    tokens_column: TokensCol = None, tags_column: TagsCol = None, question_column: QuestionCol = None,
    context_column: ContextCol = None, answers_column: AnswersCol = None,
) -> None:
    """Evaluate a trained model: writes metrics.json, report.md, plots and predictions.jsonl into
    RUN/eval-<name>/."""
    offline()
    from rich.progress import Progress

    from tuneforge.evaluation import evaluate_run

    check_run(run)
    cols = column_map(text=text_column, text_pair=text_pair_column, label=label_column, tokens=tokens_column,
                      tags=tags_column, question=question_column, context=context_column, answers=answers_column)
    with Progress(console=err, transient=True) as progress:
        tid = progress.add_task("Evaluating", total=None)
        metrics, folder = evaluate_run(run, data, name=name, columns=cols, batch_size=batch_size,
                                       strict_bio=not lenient_bio,
                                       on_start=lambda n: progress.update(tid, total=n),
                                       on_batch=lambda n: progress.advance(tid, n))
    print_metrics(metrics, f"Metrics on {data.name}")
    out.print(f"Report: {folder / 'report.md'}")


def predict(
    run: Annotated[Path, typer.Argument(help="A trained model folder.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to predict (QA: use --question with "
                                                            "one context text).")] = None,
    data: Annotated[Path | None, typer.Option(help="A data file to predict instead of TEXTS.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write predictions as JSONL here.")] = None,
    question: Annotated[str | None, typer.Option(help="QA: the question to ask of each text.")] = None,
    batch_size: BatchOpt = 64,
    max_new_tokens: Annotated[int | None, typer.Option(min=1, help="Generation: the most tokens per reply "
                                                                    "(default 256).")] = None,
    text_column: TextCol = None, text_pair_column: PairCol = None, tokens_column: TokensCol = None,
    question_column: QuestionCol = None, context_column: ContextCol = None,
) -> None:
    """Predict labels, entities (with character spans) or answers (with spans)."""
    offline()
    from tuneforge.inference import load_predictor
    from tuneforge.utils.fs import write_jsonl

    check_run(run)
    predictor = load_predictor(run)
    task = predictor.task
    options: dict[str, Any] = {}
    if max_new_tokens is not None:
        if not task.generative:
            raise ConfigError(f"max_new_tokens: applies to generation models, not {task.name}")
        options["max_new_tokens"] = max_new_tokens
    if data is not None:
        from rich.progress import Progress

        from tuneforge.tasks import load_dataset

        ds = load_dataset(data, task.name, require_labels=False,
                          columns=column_map(text=text_column, text_pair=text_pair_column, tokens=tokens_column,
                                             question=question_column, context=context_column))
        with Progress(console=err, transient=True) as progress:
            tid = progress.add_task("Predicting", total=len(ds))
            preds = predictor.predict_examples(ds.examples, batch_size=batch_size,
                                               on_batch=lambda n: progress.advance(tid, n), **options)
        inputs: list[Any] = ds.examples
    else:
        if not texts:
            raise ConfigError("texts: give one or more texts, or --data FILE")
        asks = "question" in task.columns  # the task reads each text as a context to ask --question of
        if asks and not question:
            raise ConfigError(f"question: a {task.name} model needs --question")
        inputs = [{"question": question, "context": t} for t in texts] if asks else list(texts)
        preds = predictor.predict(inputs, batch_size=batch_size, **options)
    if output is not None:
        write_jsonl(output, preds)
        out.print(f"Wrote {len(preds)} predictions to {output}")
        return
    for inp, p in zip(inputs, preds, strict=True):
        out.print(_shown(inp, p), highlight=False)


def _shown(inp: Any, p: dict[str, Any]) -> str:
    """One prediction as a line (or two) of text, by what it holds: labels, entities or an answer."""
    from rich.markup import escape

    if isinstance(inp, str):
        shown = inp
    else:
        shown = inp.get("text") or inp.get("question") or " ".join(inp.get("tokens") or []) or json.dumps(inp)
    shown = escape(shown)
    if "labels" in p:
        return f"{escape(', '.join(p['labels']))}\t{shown}"
    if "label" in p:
        return f"{escape(str(p['label']))} ({p['score']:.3f})\t{shown}"
    if "entities" in p:
        ents = "; ".join(f"{e['text']} [{e['type']}] {e['start']}-{e['end']}" for e in p["entities"]) or "none"
        return f"{shown}\n  entities: {escape(ents)}"
    if set(p) == {"text"}:  # a generated reply
        return f"{shown}\n  {escape(p['text'])}"
    if "answer" in p:
        return f"{shown}\n  answer: {escape(repr(p['answer']))} at {p['start']}-{p['end']} ({p['score']:.3f})"
    return f"{shown}\n  {escape(json.dumps(p, ensure_ascii=False))}"
