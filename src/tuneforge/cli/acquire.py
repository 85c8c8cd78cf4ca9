"""``tuneforge data crawl`` and ``data import``: getting data in (registered on the ``data`` group by
:func:`register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tuneforge.cli.options import err, out
from tuneforge.errors import ConfigError

__all__ = ["data_crawl", "data_import", "register"]


def register(app: typer.Typer) -> None:
    """Add ``crawl`` and ``import`` to the ``data`` command group."""
    app.command("crawl")(data_crawl)
    app.command("import")(data_import)


def _languages(values: list[str] | None) -> tuple[str, ...]:
    return tuple(code.strip().lower() for v in values or [] for code in v.split(",") if code.strip())


def data_crawl(
    urls: Annotated[list[str], typer.Argument(help="Start URLs (http:// or https://).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write: one page per line with "
                                                                "text, url, title, lang, fetched_at.")],
    max_pages: Annotated[int, typer.Option(min=1, help="Stop after writing this many pages.")] = 100,
    same_domain: Annotated[bool, typer.Option("--same-domain/--any-domain",
                                              help="Follow links only on the start URLs' hosts (and their "
                                                   "subdomains); redirects elsewhere are not followed.")] = True,
    delay: Annotated[float, typer.Option(min=0, help="Seconds between two requests to one host (a larger "
                                                     "Crawl-delay in robots.txt wins).")] = 1.0,
    max_bytes: Annotated[int, typer.Option(min=1024, help="Skip a response larger than this (the download "
                                                          "stops there).")] = 2_000_000,
    lang: Annotated[list[str] | None, typer.Option(help="Keep only pages in these languages (ISO 639-1 codes, "
                                                        "e.g. zh,en; repeat or separate by commas).")] = None,
    min_chars: Annotated[int, typer.Option(min=1, help="Skip pages with less text than this.")] = 1,
    max_depth: Annotated[int | None, typer.Option(min=0, help="Follow links at most this many hops from the "
                                                              "start URLs (default: no limit).")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for a server.")] = 15.0,
) -> None:
    """Collect text from web pages, politely, into JSONL.

    robots.txt and Crawl-delay are obeyed (a disallowed URL is never requested), requests are paced per host
    and sent as TuneForge/<version>; non-HTML and oversized responses are skipped without downloading them; the
    main text is extracted with trafilatura, duplicates (exact and after normalization) dropped and the language
    tagged. The file is written when the crawl ends (Ctrl-C keeps the pages so far)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from tuneforge.data.crawl import USER_AGENT, CrawlOptions, CrawlSummary, crawl_to_file
    from tuneforge.data.crawl.extract import language_detector

    options = CrawlOptions(max_pages=max_pages, same_domain=same_domain, delay_s=delay, max_bytes=max_bytes,
                           timeout_s=timeout, languages=_languages(lang), min_chars=min_chars, max_depth=max_depth)
    err.print(f"Crawling as {escape(USER_AGENT)}; language tags by {language_detector()}", highlight=False)
    progress = Progress(SpinnerColumn(), TextColumn("pages"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("[dim]{task.fields[last]}"), TimeElapsedColumn(), console=err, transient=True)

    def on_url(url: str, outcome: str, summary: CrawlSummary) -> None:
        progress.update(task, completed=summary.written, last=f"{outcome}: {url}"[-70:])

    with progress:
        task = progress.add_task("crawl", total=max_pages, last="")
        summary = crawl_to_file(urls, output, options, on_url=on_url)
    _crawl_summary(summary, output)
    if summary.written == 0:
        raise typer.Exit(1)


def _crawl_summary(summary: Any, output: Path) -> None:
    from tuneforge.data.crawl import SKIP_REASONS

    t = Table(title="Crawl", show_header=True)
    t.add_column("")
    t.add_column("URLs", justify="right")
    t.add_column("example", overflow="fold")
    t.add_row("[green]written", str(summary.written), str(output))
    for reason, n in summary.skipped.most_common():
        t.add_row(f"skipped: {SKIP_REASONS.get(reason, reason)}", str(n), summary.examples.get(reason, ""))
    if summary.off_site_links:
        t.add_row("links to other sites (not followed)", str(summary.off_site_links), "")
    out.print(t)
    rate = summary.fetched / summary.seconds if summary.seconds else 0.0
    note = " (interrupted: the pages so far were kept)" if summary.interrupted else ""
    out.print(f"{summary.written} page(s) written to {escape(str(output))}; {summary.requests} request(s), "
              f"{summary.fetched} page(s) fetched in {summary.seconds:.1f}s ({rate:.1f}/s){note}", highlight=False)
    if summary.written == 0:
        err.print("[red]no page was written[/]: see the reasons above (robots.txt, the start URL, --lang ...)")


def data_import(
    source: Annotated[str, typer.Argument(help="A .parquet/.xlsx/.jsonl/.json/.csv file, a save_to_disk folder, a "
                                               "hub cache folder (datasets--owner--name or a snapshot), or "
                                               "owner/name in the hub cache.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write.")],
    split: Annotated[str | None, typer.Option(help="The split to read (default: train when there are "
                                                   "several).")] = None,
    text_field: Annotated[str | None, typer.Option(help="The source field written as text.")] = None,
    label_field: Annotated[str | None, typer.Option(help="The source field written as label.")] = None,
    field: Annotated[list[str] | None, typer.Option(help="NEW=OLD: write the source field OLD as NEW (e.g. "
                                                         "question=query); repeat for several.")] = None,
    sheet: Annotated[str | None, typer.Option(help="Excel: the sheet to read (default: the first).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="The hub cache folder to look owner/name up in (default: "
                                                        "huggingface_hub's: $HF_HUB_CACHE, $HF_HOME ...).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Import at most this many records.")] = None,
) -> None:
    """Convert open data to JSON Lines for training, offline.

    Nothing is downloaded. Reads Parquet, Excel, a datasets folder saved with save_to_disk, or a dataset in the
    Hugging Face hub cache. ClassLabel ids become their names. Check the result with `tuneforge data check OUT`."""
    from tuneforge.data.importers import import_records

    mapping: dict[str, str] = {}
    problems = []
    for item in field or []:
        new, sep, old = item.partition("=")
        if not sep or not new.strip() or not old.strip():
            problems.append(f"--field: {item!r} is not NEW=OLD (e.g. --field question=query)")
        else:
            mapping[new.strip()] = old.strip()
    for name, value in (("text", text_field), ("label", label_field)):
        if value is not None:
            mapping[name] = value
    if problems:
        raise ConfigError(problems)
    with err.status(f"Importing {escape(source)}..."):
        result = import_records(source, output, split=split, fields=mapping, sheet=sheet, cache_dir=cache_dir,
                                limit=limit)
    where = result.files[0] if len(result.files) == 1 else f"{len(result.files)} files under {result.files[0]}"
    split_note = f", split {result.split}" + (f" (of {', '.join(result.splits)})" if len(result.splits) > 1 else "") \
        if result.split else ""
    out.print(f"[green]OK[/] {result.records} record(s) from {escape(where)} ({result.kind}{split_note}) to "
              f"{escape(str(output))}", highlight=False)
    out.print(f"fields: {escape(', '.join(result.columns))}", highlight=False)
    for col, names in result.class_labels.items():
        if col in result.columns or col in mapping.values():
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            out.print(f"{escape(col)}: class ids written as their names ({escape(shown)})", highlight=False)
    out.print(f"Next: tuneforge data check {escape(str(output))}", highlight=False)
