"""``tuneforge solution assistant ...``: thin commands over :mod:`tuneforge.solutions.assistant`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tuneforge.errors import ConfigError, DataError, DataProblem

app = typer.Typer(no_args_is_help=True,
                  help="The customer-service assistant: import a knowledge base, train, ask, generate cited "
                       "answers, feedback.")

out = Console()
err = Console(stderr=True)


def _config_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config: {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"config: {path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a JSON object of assistant options")
    return data


@app.command()
def build(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder the assistant bundle is written to.")],
    kb: Annotated[list[Path] | None, typer.Option("--kb", help="Knowledge base: QA pairs (.jsonl/.csv/.json: "
                                                               "question, answer, intent) or articles (.md/.html/"
                                                               ".txt, or a folder of them). Repeatable.")] = None,
    tickets: Annotated[Path | None, typer.Option(help="Past conversations labelled with intents (text, label): "
                                                      "trains the intent classifier.")] = None,
    dev: Annotated[Path | None, typer.Option(help="Held-out tickets to calibrate the threshold on "
                                                  "(default: 10% of --tickets).")] = None,
    base_model: Annotated[str, typer.Option(help="Base model of the intent classifier.")] = "minilm",
    encoder: Annotated[str | None, typer.Option(
        help="Retrieval encoder: a base model, or 'intent' for the fine-tuned classifier's encoder "
             "(default: intent with --tickets, else --base-model).")] = None,
    epochs: Annotated[float, typer.Option(help="Training epochs of the intent classifier.")] = 2.0,
    config: Annotated[Path | None, typer.Option(help="JSON file of assistant options: handover_intents, "
                                                     "templates, top_k, threshold ...")] = None,
    threshold: Annotated[float | None, typer.Option(help="Confidence threshold (default: calibrated on dev).")] = None,
    target_precision: Annotated[float, typer.Option(help="Calibrate the threshold so that answered dev "
                                                         "messages are this often right.")] = 0.95,
    similarity_quantile: Annotated[float, typer.Option(
        help="Also hand over messages less similar to every passage and ticket than this share of the dev "
             "tickets are (0: off).")] = 0.02,
    qa_run: Annotated[Path | None, typer.Option(help="A TuneForge QA run folder to point at the answer span.")] = None,
    no_ticket_index: Annotated[bool, typer.Option("--no-ticket-index",
                                                  help="Do not index past tickets for retrieval.")] = False,
    writer: Annotated[str | None, typer.Option(
        help="Generate answers that cite the passages: a generation run folder (copied into the bundle) or a base "
             "chat model (smollm2). Sets the answer mode to generate.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle.")] = False,
) -> None:
    """Import the knowledge base, fine-tune the intent classifier on past tickets, and build the index."""
    from tuneforge.solutions.assistant.build import BuildOptions, build_assistant

    values = _config_file(config)
    # the fine-tuned encoder retrieves better and tells unfamiliar messages apart better (docs/solutions/assistant.md)
    values.setdefault("encoder", "intent" if tickets is not None else base_model)
    if encoder:
        values["encoder"] = encoder
    summary = build_assistant(BuildOptions(
        output=output, knowledge=kb or [], tickets=tickets, dev=dev, base_model=base_model, epochs=epochs,
        config=values, threshold=threshold, target_precision=target_precision, qa_run=qa_run,
        similarity_quantile=similarity_quantile, writer=writer,
        index_tickets=not no_ticket_index, overwrite=overwrite), console=err)
    out.print(f"Assistant bundle written to [bold]{output}[/]: {summary['passages']} passages, threshold "
              f"{summary['threshold']:.3f}" + (f", dev accuracy {summary['dev_accuracy']:.3f}"
                                               if "dev_accuracy" in summary else ""))


def _load(bundle: Path) -> Any:
    from tuneforge.solutions.assistant.assistant import Assistant

    with err.status("Loading the assistant..."):
        return Assistant.load(bundle)


def _print_reply(reply: Any, as_json: bool) -> None:
    if as_json:
        out.print_json(data=reply.to_json())
        return
    who = "[yellow]handover[/]" if reply.handover else "[green]answer[/]"
    out.print(f"{who} ({reply.reason}; intent {reply.intent}, confidence {reply.confidence:.2f})")
    out.print(reply.text, highlight=False, markup=False)
    if reply.answer_span:
        out.print(f"[dim]exact answer:[/] {reply.answer_span['text']}", highlight=False)
    if reply.citations:
        for c in reply.citations:
            out.print(f"[dim]\\[{c['n']}] {c['source']}{'#' + c['anchor'] if c['anchor'] else ''} {c['title']}[/]",
                      highlight=False)
    elif reply.passages and not reply.handover:
        p = reply.passages[0]
        out.print(f"[dim]source: {p['source']}{'#' + p['anchor'] if p['anchor'] else ''} {p['title']}[/]",
                  highlight=False)


@app.command()
def ask(bundle: Annotated[Path, typer.Argument(help="An assistant bundle folder.")],
        message: Annotated[list[str], typer.Argument(help="The message; several are read as turns of one "
                                                          "conversation.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the reply as JSON.")] = False) -> None:
    """Answer one message (or a short conversation, one message per argument)."""
    from tuneforge.solutions.assistant.assistant import Session

    assistant = _load(bundle)
    session = Session()
    for m in message:
        if len(message) > 1 and not as_json:
            out.print(f"[bold]> {m}[/]", highlight=False)
        _print_reply(assistant.answer(session, m), as_json)


@app.command()
def chat(bundle: Annotated[Path, typer.Argument(help="An assistant bundle folder.")]) -> None:
    """An interactive conversation (an empty line or Ctrl-D ends it)."""
    from tuneforge.solutions.assistant.assistant import Session

    assistant = _load(bundle)
    session = Session()
    while True:
        try:
            message = input("you> ").strip()
        except EOFError:
            break
        if not message:
            break
        reply = assistant.answer(session, message)
        _print_reply(reply, False)
        if reply.handover:
            break


@app.command()
def feedback(bundle: Annotated[Path, typer.Argument(help="An assistant bundle folder.")],
             message: Annotated[str, typer.Option(help="The customer's message.")],
             helpful: Annotated[bool, typer.Option("--helpful/--not-helpful", help="Was the answer helpful?")],
             intent: Annotated[str | None, typer.Option(help="The intent the assistant predicted.")] = None,
             correct_intent: Annotated[str | None, typer.Option(help="The right intent.")] = None,
             correct_answer: Annotated[str | None, typer.Option(help="The right answer.")] = None) -> None:
    """Record feedback on an answer in the bundle's feedback.jsonl."""
    from tuneforge.solutions.assistant.assistant import read_bundle_info
    from tuneforge.solutions.assistant.feedback import Feedback, append_feedback

    info = read_bundle_info(bundle)
    labels = info.get("labels") or []
    if correct_intent and labels and correct_intent not in labels:
        err.print(f"[yellow]note:[/] '{correct_intent}' is a new intent (not one of the model's {len(labels)}); "
                  "it is kept and exported, and the next build learns it once it has examples.")
    append_feedback(bundle, Feedback(message=message, helpful=helpful, intent=intent, correct_intent=correct_intent,
                                     correct_answer=correct_answer))
    out.print("Feedback recorded.")


@app.command("export-feedback")
def export_feedback(bundle: Annotated[Path, typer.Argument(help="An assistant bundle folder.")],
                    output: Annotated[Path, typer.Option("--output", "-o",
                                                         help="Intent training rows (JSONL: text, label).")],
                    knowledge_output: Annotated[Path | None, typer.Option(
                        help="Corrected answers as knowledge-base rows (JSONL: question, answer, intent).")] = None,
                    ) -> None:
    """Turn the feedback into training rows for the next model (and new knowledge-base entries)."""
    from tuneforge.solutions.assistant.feedback import export_training_rows, read_feedback
    from tuneforge.utils.fs import write_jsonl

    rows = export_training_rows(read_feedback(bundle))
    write_jsonl(output, rows["intents"])
    if knowledge_output is not None:
        write_jsonl(knowledge_output, rows["knowledge"])
    out.print(f"{len(rows['intents'])} intent rows written to {output}"
              + (f", {len(rows['knowledge'])} knowledge rows to {knowledge_output}" if knowledge_output else ""))


@app.command("set-writer")
def set_writer_cmd(bundle: Annotated[Path, typer.Argument(help="An assistant bundle folder.")],
                   writer: Annotated[str, typer.Argument(help="A generation run folder (copied into the bundle) or a "
                                                              "base chat model (smollm2).")],
                   answer_mode: Annotated[str, typer.Option(help="generate (the writer answers) or retrieval (the "
                                                                 "writer is kept for evaluate).")] = "generate",
                   ) -> None:
    """Give a bundle the writer of generated answers (answers that cite the knowledge-base passages)."""
    from tuneforge.solutions.assistant.assistant import set_writer

    cfg = set_writer(bundle, writer, answer_mode=answer_mode)
    out.print(f"Writer of {bundle}: [bold]{cfg['writer'] or writer}[/]; answer mode {cfg['answer_mode']}.")


@app.command("writer-data")
def writer_data(bundle: Annotated[Path, typer.Argument(help="An assistant bundle folder (its passages and "
                                                            "retrieval make the prompts).")],
                data: Annotated[Path, typer.Option(help="Questions with reference answers (JSONL: question, answer, "
                                                        "and intent or passage_id; or chat messages).")],
                output: Annotated[Path, typer.Option("--output", "-o", help="Chat training file (JSONL).")],
                limit: Annotated[int | None, typer.Option(help="At most this many examples (drawn at random).")
                                 ] = None,
                no_answer_share: Annotated[float, typer.Option(
                    help="Share of examples whose passages do not hold the answer (the writer learns to say so)."
                )] = 0.15,
                mixed_share: Annotated[float, typer.Option(
                    help="Share of examples showing the answering passage among near misses.")] = 0.3,
                seed: Annotated[int, typer.Option(help="Random seed.")] = 42) -> None:
    """Turn questions with reference answers into the writer's training examples: numbered passages and the
    question -> the answer citing the passages that hold it. Train the writer on them with
    `tuneforge train --task generation`, then `set-writer`."""
    from tuneforge.solutions.assistant.answers import read_answer_rows
    from tuneforge.solutions.assistant.writer_data import writer_examples
    from tuneforge.utils.fs import write_jsonl

    rows = read_answer_rows(data, require_answer=True)
    assistant = _load(bundle)
    with err.status(f"Retrieving passages for {len(rows)} questions..."):
        examples, summary = writer_examples(assistant, rows, limit=limit, no_answer_share=no_answer_share,
                                            mixed_share=mixed_share, seed=seed)
    write_jsonl(output, examples)
    out.print(f"{summary['examples']} examples written to {output} ({summary['answer']} answers, of which "
              f"{summary['mixed']} among near misses; {summary['no_answer']} with no passage that answers; "
              f"{summary['skipped']} questions skipped: no passage holds their answer)")
    out.print(f"Next: tuneforge train --task generation --data {output} --base-model smollm2 --epochs 1 "
              f"--max-length 640 --output writer-run && tuneforge solution assistant set-writer {bundle} writer-run",
              highlight=False, markup=False)


@app.command()
def evaluate(bundle: Annotated[Path, typer.Argument(help="An assistant bundle folder.")],
             data: Annotated[Path | None, typer.Option(help="Messages with their intent (text, label); intents the "
                                                            "assistant does not know count as should-hand-over.")
                             ] = None,
             answers: Annotated[Path | None, typer.Option(
                 help="Questions with reference answers (question, answer, and intent or passage_id: what holds "
                      "the answer; answer null: the knowledge base cannot answer it): compares retrieval-only and "
                      "generated answers.")] = None,
             writer: Annotated[list[str] | None, typer.Option(
                 help="Also generate with this writer (a generation run folder or a base chat model); "
                      "repeatable.")] = None,
             batch_size: Annotated[int, typer.Option(help="Questions generated together.")] = 8,
             output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the metrics (and a few "
                                                                                "answers) as JSON here.")] = None,
             as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False) -> None:
    """Intent accuracy, retrieval hit-rate@1/@k and handover precision/recall on labelled messages (--data);
    token F1, ROUGE-L and citation accuracy of retrieval-only against generated answers (--answers)."""
    from tuneforge.solutions.assistant.scoring import evaluate_assistant
    from tuneforge.tasks import load_dataset

    if data is None and answers is None:
        raise ConfigError("data/answers: give labelled messages (--data), questions with answers (--answers) or both")
    metrics: dict[str, Any] = {}
    assistant = _load(bundle)
    if data is not None:
        ds = load_dataset(data, "classification", require_labels=True)
        if not ds.examples:
            raise DataError([DataProblem(str(data), None, None, "no messages")])
        with err.status(f"Evaluating on {len(ds.examples)} messages..."):
            metrics = evaluate_assistant(assistant, [{"text": e["text"], "label": e["label"]} for e in ds.examples])
    if answers is not None:
        from tuneforge.solutions.assistant.answers import evaluate_answers, read_answer_rows
        from tuneforge.solutions.assistant.writer import load_writer

        rows = read_answer_rows(answers)
        modes = ["retrieval"] + (["generate"] if assistant.has_writer else [])
        if not assistant.has_writer and not writer:
            err.print("[yellow]note:[/] the bundle has no writer: retrieval-only answers only (add one with "
                      "set-writer, or pass --writer)")
        writers = {w: load_writer(w) for w in writer or []}
        result = evaluate_answers(assistant, rows, modes=modes, writers=writers, batch_size=batch_size, keep=5,
                                  progress=lambda m: err.print(f"[dim]{m}[/]"))
        metrics["answers"] = result
    if output is not None:
        from tuneforge.utils.fs import atomic_write_json

        atomic_write_json(output, metrics)
    if as_json:
        shown = dict(metrics)
        if "answers" in shown:  # the sample answers go to --output only
            shown["answers"] = {k: v for k, v in shown["answers"].items() if k != "samples"}
        out.print_json(data=shown)
        return
    flat = {k: v for k, v in metrics.items() if k != "answers"}
    if flat:
        table = Table("metric", "value", title=f"{bundle} on {data}")
        for k, v in flat.items():
            table.add_row(k, "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
        out.print(table)
    if "answers" in metrics:
        res = metrics["answers"]["modes"]
        names = list(res)
        table = Table("metric", *names, title=f"answers of {bundle} to {answers}")
        keys = list(dict.fromkeys(k for m in res.values() for k in m))
        for k in keys:
            table.add_row(k, *["—" if res[n].get(k) is None else f"{res[n][k]:.4f}" if isinstance(res[n][k], float)
                               else str(res[n][k]) for n in names])
        out.print(table)
