"""``tuneforge data check|clean|split|augment``: look at a data file before training on it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tuneforge.cli.options import (
    AnswersCol,
    ContextCol,
    DelimiterOpt,
    EncodingOpt,
    FormatOpt,
    LabelCol,
    PairCol,
    QuestionCol,
    TagsCol,
    TaskOpt,
    TextCol,
    TokensCol,
    column_map,
    err,
    get_task,
    offline,
    out,
    print_warnings,
)

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Check, clean and split data files.")


@app.command("check")
def data_check(
    file: Annotated[Path, typer.Argument(help="The data file to check.")],
    task: TaskOpt = "classification",
    text_column: TextCol = None, text_pair_column: PairCol = None, label_column: LabelCol = None,
    tokens_column: TokensCol = None, tags_column: TagsCol = None, question_column: QuestionCol = None,
    context_column: ContextCol = None, answers_column: AnswersCol = None, fmt: FormatOpt = None,
    multi_label: Annotated[bool | None, typer.Option("--multi-label/--single-label",
                                                     help="Several labels per example (default: detect).")] = None,
    lenient_bio: Annotated[bool, typer.Option(help="NER: read a stray I-X as the start of an entity.")] = False,
    delimiter: DelimiterOpt = None, encoding: EncodingOpt = None,
) -> None:
    """Validate a data file and summarize it. Every problem is listed with its file, line and field."""
    from tuneforge.tasks import load_dataset

    spec = get_task(task)
    cols = column_map(text=text_column, text_pair=text_pair_column, label=label_column, tokens=tokens_column,
                      tags=tags_column, question=question_column, context=context_column, answers=answers_column)
    ds = load_dataset(file, task, columns=cols, format=fmt, multi_label=multi_label, strict_bio=not lenient_bio,
                      min_classes=2, delimiter=delimiter, encoding=encoding)  # the same rules as train
    print_warnings(ds)
    out.print(f"[green]OK[/] {file}: {len(ds)} {task} examples ({ds.format}), fingerprint {ds.fingerprint}")
    _summarize(spec, ds.examples)


def _summarize(task: Any, examples: list[dict[str, Any]]) -> None:
    """What a data file holds, by what the task's examples carry: labels, entity tags or answers."""
    if task.sequence_level:
        _label_table(examples)
    elif "tags" in task.columns:
        ents: Counter[str] = Counter(t[2:] for ex in examples for t in ex["tags"] or [] if t.startswith("B-"))
        out.print("Entities: " + ", ".join(f"{k} {v}" for k, v in ents.most_common()))
    elif "answers" in task.columns and "context" in task.columns:
        with_answers = sum(1 for ex in examples if ex["answers"]["text"])
        out.print(f"{with_answers} questions with answers, {len({ex['context'] for ex in examples})} contexts")


def _label_table(examples: list[dict[str, Any]]) -> None:
    counts: Counter[str] = Counter()
    for ex in examples:
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


@app.command("clean")
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
    delimiter: DelimiterOpt = None, encoding: EncodingOpt = None,
) -> None:
    """Normalize (Unicode NFKC, whitespace, HTML), dedupe and filter; print what was removed and why."""
    from tuneforge.data import CleanOptions
    from tuneforge.tasks import clean_dataset, load_dataset, write_dataset

    get_task(task)
    cols = column_map(text=text_column, text_pair=text_pair_column, label=label_column, tokens=tokens_column,
                      tags=tags_column)
    with err.status("Cleaning..."):
        ds = load_dataset(file, task, columns=cols, format=fmt, require_labels=False, allow_empty=True,
                          delimiter=delimiter, encoding=encoding)
        opts = CleanOptions(min_chars=min_chars, max_chars=max_chars, near_threshold=near_threshold,
                            near_dedupe=not no_near_dedupe, strip_html=not no_html, lowercase=lowercase)
        cleaned, report = clean_dataset(ds, opts)
        write_dataset(cleaned, output)
    print_warnings(ds)
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


@app.command("split")
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
    delimiter: DelimiterOpt = None, encoding: EncodingOpt = None,
) -> None:
    """Split into train/dev/test: stratified by label for classification, by context for QA; seeded."""
    from tuneforge.tasks import load_dataset, split_dataset, write_dataset

    spec = get_task(task)
    # a sequence-level task's unlabelled rows still split (the labelled ones are stratified)
    ds = load_dataset(file, task, columns=column_map(text=text_column, label=label_column), format=fmt,
                      require_labels=not spec.sequence_level, delimiter=delimiter, encoding=encoding)
    print_warnings(ds)
    parts = split_dataset(ds, dev=dev, test=test, seed=seed)
    folder = output_dir or file.parent
    stem = file.stem
    for name, part in parts.items():
        path = folder / f"{stem}.{name}.jsonl"
        write_dataset(part, path)
        out.print(f"{name}: {len(part)} examples → {path}")


@app.command("augment")
def data_augment(
    file: Annotated[Path, typer.Argument(help="Classification training data to augment.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the JSONL (originals + "
                                                                "augmented rows marked augmented: true).")],
    base_model: Annotated[str, typer.Option(help="Model whose embedding space supplies synonyms.")] = "minilm",
    copies: Annotated[int, typer.Option(help="Augmented copies per example.")] = 2,
    rate: Annotated[float, typer.Option(help="Share of words changed.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    text_column: TextCol = None, label_column: LabelCol = None,
    delimiter: DelimiterOpt = None, encoding: EncodingOpt = None,
) -> None:
    """EDA augmentation (synonym replacement, insertion, swap, deletion; English and Chinese). Use the output for
    training only, never as dev or test data."""
    offline()
    from tuneforge.data.augment import EmbeddingSynonyms, augment_examples
    from tuneforge.models.registry import resolve_base_model
    from tuneforge.settings import Settings
    from tuneforge.tasks import load_dataset
    from tuneforge.utils.fs import write_jsonl

    ds = load_dataset(file, "classification", columns=column_map(text=text_column, label=label_column),
                      delimiter=delimiter, encoding=encoding)
    print_warnings(ds)
    syn = EmbeddingSynonyms.from_model_dir(resolve_base_model(base_model, Settings().cache_dir).path)
    rows = augment_examples(ds.examples, synonyms=syn, copies=copies, rate=rate, seed=seed)
    write_jsonl(output, [{k: v for k, v in r.items() if v is not None} for r in rows])
    out.print(f"Wrote {len(rows)} rows ({len(rows) - len(ds)} augmented) to {output}")
