"""What the command groups share: the consoles, the column and format options, task look-up and small helpers."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["COLUMN_FLAGS", "AnswersCol", "ContextCol", "DelimiterOpt", "EncodingOpt", "FormatOpt", "LabelCol",
           "PairCol", "QuestionCol", "TASK_HELP", "TagsCol", "TaskOpt", "TextCol", "TokensCol", "column_map", "err",
           "get_task", "offline", "out", "print_metrics", "print_warnings"]

out = Console()
err = Console(stderr=True)

#: the task is checked against the registry when the command runs, so a task a plugin registers works too
TASK_HELP = "classification, ner, qa or generation (or a task registered by a plugin)."
TaskOpt = Annotated[str, typer.Option("--task", "-t", help=TASK_HELP)]

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
DelimiterOpt = Annotated[str | None, typer.Option(
    "--delimiter", help="CSV/TSV field separator: one character, or tab, comma, semicolon, pipe (default: detected).")]
EncodingOpt = Annotated[str | None, typer.Option(
    "--encoding", help="Text encoding of the file, e.g. big5, shift_jis, gbk, cp1252 (default: UTF-8, or detected "
                       "with a warning).")]

#: column key -> its option, in the order the commands list them (train builds its signature from this)
COLUMN_FLAGS: dict[str, Any] = {"text": TextCol, "text_pair": PairCol, "label": LabelCol, "tokens": TokensCol,
                                "tags": TagsCol, "question": QuestionCol, "context": ContextCol,
                                "answers": AnswersCol}


def column_map(**kw: str | None) -> Any:
    """A ``ColumnMap`` from the ``--*-column`` options (``None``: detect the column)."""
    from tuneforge.data import ColumnMap

    return ColumnMap(**kw)


def get_task(name: str) -> Any:
    """The registered task called ``name``; a ConfigError naming the registered ones otherwise."""
    from tuneforge.tasks import get_task as lookup

    return lookup(name)


def offline() -> None:
    """Never reach for a model hub: weights come from installed packages or local folders."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def print_warnings(ds: Any) -> None:
    """What a dataset's reader accepted but the user should know (the encoding a file was read as ...)."""
    from rich.markup import escape

    for w in ds.warnings:
        out.print(f"[yellow]warning:[/] {escape(str(w))}")


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, float):
            t.add_row(k, f"{v:.4f}")
        elif isinstance(v, int):
            t.add_row(k, str(v))
    out.print(t)
