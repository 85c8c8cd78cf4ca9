"""``tuneforge data check|clean|split|augment``: look at a data file before training on it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tuneforge.cli import acquire
from tuneforge.cli.options import (
    TASK_HELP,
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
from tuneforge.errors import ConfigError

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Check, clean and split data files; crawl and import data.")
acquire.register(app)  # data crawl, data import


GenTaskOpt = Annotated[str | None, typer.Option("--task", "-t", help=TASK_HELP + " Default: from the file's "
                                                                                  "columns.")]


@app.command("check")
def data_check(
    file: Annotated[Path, typer.Argument(help="The data file to check.")],
    task: GenTaskOpt = None,
    text_column: TextCol = None, text_pair_column: PairCol = None, label_column: LabelCol = None,
    tokens_column: TokensCol = None, tags_column: TagsCol = None, question_column: QuestionCol = None,
    context_column: ContextCol = None, answers_column: AnswersCol = None, fmt: FormatOpt = None,
    multi_label: Annotated[bool | None, typer.Option("--multi-label/--single-label",
                                                     help="Several labels per example (default: detect).")] = None,
    lenient_bio: Annotated[bool, typer.Option(help="NER: read a stray I-X as the start of an entity.")] = False,
    strict: Annotated[bool, typer.Option(help="QA: refuse answer offsets that do not point at the answer (default: "
                                              "repair those a little off, drop those not found, and report "
                                              "both).")] = False,
    delimiter: DelimiterOpt = None, encoding: EncodingOpt = None,
    base_model: Annotated[str | None, typer.Option(help="Generation: the model whose chat template renders the "
                                                        "conversations to count tokens (default smollm2).")] = None,
    max_length: Annotated[int | None, typer.Option(min=1, help="Generation: tokens per example in training "
                                                               "(default 1024); longer ones are truncated.")] = None,
    epochs: Annotated[str | None, typer.Option(help="Generation: epochs of the billable figure, a number or auto "
                                                    "(OpenAI's rule: 3, so that examples x epochs is 100-25,000; "
                                                    "the default).")] = None,
    pii_scan: Annotated[bool, typer.Option("--pii-scan/--no-pii-scan",
                                           help="Warn when the texts hold personal data (e-mails, phone numbers, "
                                                "credit cards, IBANs, IPs, Chinese ID numbers; the first "
                                                "20,000 examples).")] = True,
) -> None:
    """Validate a data file and summarize it. Every problem is listed with its file, line and field; for a
    generation file also its tokens (rendered with the base model's chat template) and tokens x epochs. Personal
    data in the texts is reported as a warning (mask it with ``data clean --mask-pii``)."""
    offline()
    from tuneforge.tasks import guess_file_task, load_dataset

    name = task or guess_file_task(file, format=fmt, delimiter=delimiter, encoding=encoding)
    spec = get_task(name)
    if not spec.generative:
        given = [f"--{k.replace('_', '-')}" for k, v in (("base_model", base_model), ("max_length", max_length),
                                                          ("epochs", epochs)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: count the tokens of generation files, not {name} files")
    cols = column_map(text=text_column, text_pair=text_pair_column, label=label_column, tokens=tokens_column,
                      tags=tags_column, question=question_column, context=context_column, answers=answers_column)
    ds = load_dataset(file, name, columns=cols, format=fmt, multi_label=multi_label, strict_bio=not lenient_bio,
                      min_classes=2, delimiter=delimiter, encoding=encoding,
                      repair_offsets=not strict)  # the same rules as train
    tokens = _generation_tokens(spec, ds, base_model, max_length, epochs) if spec.generative else None
    print_warnings(ds)
    if pii_scan:
        _warn_pii(ds, file)
    out.print(f"[green]OK[/] {file}: {len(ds)} {name} examples ({ds.format}), fingerprint {ds.fingerprint}")
    if spec.generative:
        _generation_summary(ds, tokens)
    else:
        _summarize(spec, ds.examples)


def _warn_pii(ds: Any, file: Path) -> None:
    """A warning naming the personal data found in ``ds`` (counts per type, first lines), if any."""
    from tuneforge.data.pii import scan_dataset

    with err.status("Looking for personal data..."):
        report = scan_dataset(ds)
    if not report.counts:
        return
    lines = sorted({ln for where in report.lines.values() for ln in where if ln is not None})
    scope = f" (in the first {report.scanned:,})" if report.scanned < len(ds) else ""
    err.print(f"[yellow]warning:[/] personal data in {report.examples} of {len(ds)} examples{scope}: "
              f"{report.summary()}{_lines(lines)}. Mask it with: tuneforge data clean {file} --mask-pii -o OUT "
              "(or train with --mask-pii)", highlight=False)


def _name_finder(run: Path) -> Any:
    """Person names from a TuneForge NER run: the spans of its PER (or PERSON) entities."""
    from tuneforge.inference.predictor import load_predictor

    with err.status(f"Loading the NER model {run}..."):
        predictor = load_predictor(run)
    types = {label.split("-", 1)[-1] for label in predictor.labels}
    person = types & {"PER", "PERSON"}
    if not person:
        raise ConfigError(f"pii_ner: {run} predicts no person entities (PER or PERSON); it predicts "
                          f"{', '.join(sorted(types)) or 'nothing'}",
                          hint="Give an NER run trained with PER entities, or leave --pii-ner out.")

    def names(texts: Any) -> list[list[tuple[int, int]]]:
        preds = predictor.predict(list(texts))
        return [[(int(e["start"]), int(e["end"])) for e in p.get("entities", []) if e.get("type") in person]
                for p in preds]

    return names


def _pii_table(report: Any) -> None:
    if not report.counts:
        out.print("No personal data found.")
        return
    from tuneforge.data.pii import MASKS

    t = Table(title=f"Personal data masked ({report.examples} examples)")
    t.add_column("type")
    t.add_column("mask")
    t.add_column("found", justify="right")
    t.add_column("first lines")
    for kind, n in report.counts.most_common():
        t.add_row(kind, MASKS[kind], str(n), ", ".join(str(x) for x in report.lines.get(kind, []) if x is not None))
    out.print(t)


def _epochs(value: str | None) -> float | str:
    if value is None or value.strip().lower() == "auto":
        return "auto"
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number <= 1000:
        raise ConfigError(f"epochs: must be auto or a number of passes (above 0, at most 1000), not {value!r}")
    return number


def _generation_tokens(task: Any, ds: Any, base_model: str | None, max_length: int | None,
                       epochs: str | None) -> tuple[str, dict[str, Any]] | str:
    """(the base model's name, the token figures) of a generation file, or why tokens cannot be counted. A
    conversation longer than the model's context is a DataError, one problem per line."""
    from tuneforge.errors import DataError, ModelNotFoundError
    from tuneforge.runs import resolve_base_model
    from tuneforge.settings import Settings
    from tuneforge.tasks.generation import check_tokens
    from tuneforge.utils.hf import max_positions, quiet_transformers

    n_epochs = _epochs(epochs)
    try:
        with err.status(f"Loading the tokenizer of {base_model or 'smollm2'}..."):
            base = resolve_base_model(base_model or "smollm2", Settings().cache_dir)
    except ModelNotFoundError as e:
        if base_model is not None:
            raise
        return f"{e.message} {e.hint or ''}".strip()
    from transformers import AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(str(base.path))
    context = max_positions(base.path, tokenizer)
    limit = min(max_length or task.default_max_length, context)
    with err.status("Counting tokens..."):
        summary, too_long = check_tokens(tokenizer, ds.examples, ds.lines, file=str(ds.path), max_length=limit,
                                         epochs=n_epochs, context=context)
    if too_long:
        raise DataError(too_long, hint=f"{base.name} reads at most {context} tokens at once: shorten or split these "
                                       "conversations")
    return base.name, summary


def _lines(lines: list[Any], most: int = 12) -> str:
    shown = ", ".join(str(x) for x in lines[:most])
    return f" (line{'s' if len(lines) > 1 else ''} {shown}{', ...' if len(lines) > most else ''})" if lines else ""


def _generation_summary(ds: Any, tokens: tuple[str, dict[str, Any]] | str | None) -> None:
    """What a generation file holds: conversations or preference pairs, tokens, and a couple of examples."""
    from rich.markup import escape

    examples = ds.examples
    pairs = bool(examples) and "messages" not in examples[0]
    if pairs:
        out.print(f"{len(examples)} preference pairs (chosen / rejected answers): train them with --method dpo")
    else:
        learned = sum(1 for ex in examples for m in ex["messages"]
                      if m["role"] == "assistant" and m.get("weight", 1) == 1)
        multi = sum(1 for ex in examples if sum(m["role"] == "assistant" for m in ex["messages"]) > 1)
        out.print(f"{len(examples)} conversations, {learned} assistant replies to learn, {multi} multi-turn")
    if isinstance(tokens, str) or tokens is None:
        out.print(f"[yellow]note:[/] tokens can't be counted: {escape(tokens or 'no base model')}")
    else:
        name, s = tokens
        t = Table(title=f"Tokens (rendered with {name}'s chat template)", show_header=False)
        t.add_column("")
        t.add_column("", justify="right")
        t.add_row("examples", f"{s['examples']:,}")
        t.add_row("total tokens", f"{s['total_tokens']:,}")
        t.add_row(f"over max length {s['max_length']} (truncated)",
                  f"{s['over_max_length']:,}{_lines(s['over_max_length_lines'])}")
        if s["untrainable"]:
            t.add_row("with nothing left to learn", f"{s['untrainable']:,}{_lines(s['untrainable_lines'])}")
        t.add_row("tokens trained per epoch", f"{s['tokens_after_truncation']:,}")
        rule = " (auto: OpenAI's rule)" if s["epochs_rule"] == "auto" else ""
        t.add_row("epochs", f"{s['epochs']}{rule}")
        t.add_row("billable tokens (tokens x epochs)", f"{s['billable_tokens']:,}")
        out.print(t)
        if s["untrainable"]:
            out.print(f"[yellow]note:[/] {s['untrainable']} examples lose every reply token to truncation at "
                      f"{s['max_length']} tokens: raise --max-length or shorten them")
    for i, ex in enumerate(examples[:2]):
        out.print(f"\nExample {i + 1} (line {ds.lines[i]}):", highlight=False)
        turns = ex["messages"] if not pairs else [*ex["prompt"], *({**m, "role": "chosen"} for m in ex["chosen"]),
                                                  *({**m, "role": "rejected"} for m in ex["rejected"])]
        for m in turns[:8]:
            text = " ".join(str(m["content"]).split())
            out.print(f"  [bold]{m['role']}[/]: {escape(text[:160])}{'...' if len(text) > 160 else ''}",
                      highlight=False)


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
    mask_pii: Annotated[bool, typer.Option("--mask-pii", help="Mask personal data after cleaning: e-mails <EMAIL>, "
                                                              "phone numbers <PHONE>, credit cards <CREDIT_CARD>, "
                                                              "IBANs <IBAN>, IPs <IP>, Chinese ID numbers <CN_ID>, "
                                                              "names <PERSON> (with --pii-ner).")] = False,
    pii_ner: Annotated[Path | None, typer.Option("--pii-ner", help="With --mask-pii: a TuneForge NER run whose "
                                                                   "PER entities are masked as <PERSON>.")] = None,
) -> None:
    """Normalize (Unicode NFKC, whitespace, HTML), dedupe and filter; print what was removed and why. With
    --mask-pii, personal data is masked too (counts per type printed)."""
    from tuneforge.data import CleanOptions
    from tuneforge.tasks import clean_dataset, load_dataset, write_dataset

    get_task(task)
    if pii_ner is not None and not mask_pii:
        raise ConfigError("pii_ner: names are masked with --mask-pii; add it (or leave --pii-ner out)")
    names = _name_finder(pii_ner) if pii_ner is not None else None
    cols = column_map(text=text_column, text_pair=text_pair_column, label=label_column, tokens=tokens_column,
                      tags=tags_column)
    with err.status("Cleaning..."):
        ds = load_dataset(file, task, columns=cols, format=fmt, require_labels=False, allow_empty=True,
                          delimiter=delimiter, encoding=encoding)
        opts = CleanOptions(min_chars=min_chars, max_chars=max_chars, near_threshold=near_threshold,
                            near_dedupe=not no_near_dedupe, strip_html=not no_html, lowercase=lowercase)
        cleaned, report = clean_dataset(ds, opts)
        pii = None
        if mask_pii:
            from tuneforge.data.pii import PiiDetector, mask_dataset

            cleaned, pii = mask_dataset(cleaned, PiiDetector(names=names))
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
    if pii is not None:
        _pii_table(pii)


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
