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
                  help="The customer-service assistant: import a knowledge base, train, ask, feedback.")

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
        similarity_quantile=similarity_quantile,
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
    if reply.passages and not reply.handover:
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


@app.command()
def evaluate(bundle: Annotated[Path, typer.Argument(help="An assistant bundle folder.")],
             data: Annotated[Path, typer.Option(help="Messages with their intent (text, label); intents the "
                                                     "assistant does not know count as should-hand-over.")],
             as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False) -> None:
    """Intent accuracy, retrieval hit-rate@1/@k and handover precision/recall on labelled messages."""
    from tuneforge.solutions.assistant.assistant import evaluate_assistant
    from tuneforge.tasks import load_dataset

    ds = load_dataset(data, "classification", require_labels=True)
    if not ds.examples:
        raise DataError([DataProblem(str(data), None, None, "no messages")])
    assistant = _load(bundle)
    with err.status(f"Evaluating on {len(ds.examples)} messages..."):
        metrics = evaluate_assistant(assistant, [{"text": e["text"], "label": e["label"]} for e in ds.examples])
    if as_json:
        out.print_json(data=metrics)
        return
    table = Table("metric", "value", title=f"{bundle} on {data}")
    for k, v in metrics.items():
        table.add_row(k, "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
    out.print(table)
