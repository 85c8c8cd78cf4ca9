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
BackendOpt = Annotated[str | None, typer.Option(
    help="What runs the model: torch (default), torch-bf16, onnx, onnx-int8 (from the run's ONNX export, made in "
         "RUN/onnx on first use) or auto (the fastest that agrees with torch); the default for an export folder "
         "is onnx.")]

# how a generation model decodes (predict and chat): tuneforge.tasks.generation.generate.GenerationOptions
MaxNewTokensOpt = Annotated[int | None, typer.Option(help="Generation: the most tokens per reply (default 256).")]
TemperatureOpt = Annotated[float | None, typer.Option(
    help="Generation: 0 decodes greedily (the default), above 0 samples; at most 2.")]
TopPOpt = Annotated[float | None, typer.Option(help="Generation, sampling: nucleus sampling's probability mass "
                                                    "(0-1, default 1: every token).")]
TopKOpt = Annotated[int | None, typer.Option(help="Generation, sampling: keep the k most likely tokens (default 0: "
                                                  "every token).")]
RepetitionPenaltyOpt = Annotated[float | None, typer.Option(
    help="Generation: above 1 makes repeated tokens less likely (default 1: off).")]
SeedOpt = Annotated[int | None, typer.Option(help="Generation, sampling: the same seed gives the same replies.")]
StopOpt = Annotated[list[str] | None, typer.Option(
    "--stop", help="Generation: a string that ends the reply (not included); repeat for up to 4.")]


# evaluate: fairness slices (tuneforge.evaluation.slices) and robustness (tuneforge.evaluation.robustness)
SliceByOpt = Annotated[list[str] | None, typer.Option(
    "--slice-by", help="Report the metrics of each slice of the data, repeatable: length (short <= 10 < medium <= 25 "
                       "< long words), script (Unicode script), has_number, metadata.FIELD, or a column of the file "
                       "(column:NAME for one named like a built-in).")]
SliceMinGapOpt = Annotated[float | None, typer.Option(
    min=0, help="Flag a slice whose headline metric is worse than the overall one by more than this, in the "
                "metric's units (default 0.05; 5 for the 0-100 scores of QA and generated text).")]
RobustnessOpt = Annotated[bool, typer.Option(
    "--robustness", help="Also re-score the data with its texts perturbed (typos, case, punctuation, synonyms; "
                         "Chinese: simplified/traditional, full/half-width) and report each drop.")]
RobustnessSeedOpt = Annotated[int, typer.Option(help="--robustness: the seed of the perturbations.")]


def generation_options(**values: Any) -> Any:
    """The validated :class:`~tuneforge.tasks.generation.generate.GenerationOptions` of the generation flags
    (``None``: not given); a ConfigError names every bad one."""
    from tuneforge.tasks.generation.generate import GenerationOptions

    return GenerationOptions.of(**values)


def _generation_flags(task: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The generation flags given, checked; refused by name for a task that does not generate."""
    given = {k: v for k, v in values.items() if v is not None and not (isinstance(v, list | tuple) and not v)}
    if not given:
        return {}
    if not task.generative:
        names = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ConfigError(f"{names}: generation options apply to generation models, not to a {task.name} model",
                          hint="leave them out for this model")
    generation_options(**given)  # every bad value reported now, before anything is predicted
    return given


def check_run(run: Path) -> dict[str, Any]:
    """The run folder's validated manifest: a damaged or edited folder is refused before anything loads."""
    from tuneforge.runs import read_manifest

    return read_manifest(run)


def evaluate(
    run: Annotated[Path, typer.Argument(help="A trained model folder (the --output of train), or a base model to "
                                             "evaluate as it is, zero-shot: a name from `tuneforge models` (smollm2) "
                                             "or a local causal-LM folder.")],
    data: Annotated[Path, typer.Option(help="Labelled data to evaluate on.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The report folder (default: RUN/eval-<name>; "
                                                                       "required for a base model).")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="A base model: the task to evaluate it on "
                                                                  "(default: from the columns of --data).")] = None,
    name: Annotated[str | None, typer.Option(help="Report folder name: eval-<name> (default: the file's name).")]
    = None,
    batch_size: BatchOpt = 64,
    max_new_tokens: Annotated[int | None, typer.Option(min=1, help="Generation: the most tokens per reply "
                                                                    "(default 256).")] = None,
    lenient_bio: Annotated[bool, typer.Option(help="NER: read a stray I-X as the start of an entity.")] = False,
    slice_by: SliceByOpt = None, slice_min_gap: SliceMinGapOpt = None, robustness: RobustnessOpt = False,
    robustness_seed: RobustnessSeedOpt = 0, backend: BackendOpt = None,
    text_column: TextCol = None, text_pair_column: PairCol = None, label_column: LabelCol = None,
    tokens_column: TokensCol = None, tags_column: TagsCol = None, question_column: QuestionCol = None,
    context_column: ContextCol = None, answers_column: AnswersCol = None,
) -> None:
    """Evaluate a trained model, or a base model zero-shot: writes metrics.json, report.md, plots and
    predictions.jsonl into RUN/eval-<name>/ or --output; --slice-by adds each slice's metrics, --robustness the
    drop under perturbed texts (docs/responsible-ai.md)."""
    offline()
    from rich.progress import Progress

    from tuneforge.evaluation import evaluate_base_model, evaluate_run
    from tuneforge.evaluation.evaluate import EvaluationChecks

    checks = EvaluationChecks(slice_by=tuple(slice_by or ()), slice_min_gap=slice_min_gap, robustness=robustness,
                              robustness_seed=robustness_seed)
    cols = column_map(text=text_column, text_pair=text_pair_column, label=label_column, tokens=tokens_column,
                      tags=tags_column, question=question_column, context=context_column, answers=answers_column)
    backend = _backend(run, backend)
    is_run = backend != "torch" or _is_run_folder(run)
    if backend != "torch":
        _check_backend_target(run)
    elif is_run:
        trained_for = check_run(run)["task"]
        if task is not None and task != trained_for:
            raise ConfigError(f"task: {run} is a {trained_for} model; --task {task} applies to base models only",
                              hint="leave --task out to evaluate the run on its own task")
    elif output is None:
        raise ConfigError(f"output: evaluating the base model {run} needs --output DIR for its report (it has no run "
                          "folder to write into)", hint=f"e.g. tuneforge evaluate {run} --data {data} --output "
                                                         f"reports/{Path(str(run)).name}")
    with Progress(console=err, transient=True) as progress:
        tid = progress.add_task("Evaluating", total=None)
        common: dict[str, Any] = dict(columns=cols, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                      on_start=lambda n: progress.update(tid, total=n),
                                      on_batch=lambda n: progress.advance(tid, n), checks=checks)
        if is_run:
            metrics, folder = evaluate_run(run, data, name=name, output=output, strict_bio=not lenient_bio,
                                           backend=backend, **common)
        else:
            from tuneforge.tasks import guess_file_task

            assert output is not None
            metrics, folder = evaluate_base_model(str(run), task or guess_file_task(data), data, output=output,
                                                  **common)
    print_metrics(metrics, f"Metrics on {data.name}" + ("" if backend == "torch" else f" ({backend})"))
    out.print(f"Report: {folder / 'report.md'}")


def _is_run_folder(path: Path) -> bool:
    """Whether ``path`` names a run folder (finished, interrupted or damaged: check_run says which) rather than a
    base model (a registered name, or a Hugging Face folder that is no run)."""
    from tuneforge.runs import has_manifest, has_run_config

    if path.is_dir():
        return has_manifest(path) or has_run_config(path) or not (path / "config.json").is_file()
    return path.exists() or len(path.parts) > 1  # a file or a missing path: check_run says what is wrong


def load_generator_or_run(run: Path) -> Any:
    """The predictor of a run folder (checked first), or of a base chat model named or given by its folder
    (``smollm2``: a generation model as it is, zero-shot)."""
    from tuneforge.inference import load_predictor

    if _is_run_folder(run):
        check_run(run)
        return load_predictor(run)
    from tuneforge.inference.predictor import load_base_predictor

    return load_base_predictor(str(run), "generation")


def predict(
    run: Annotated[Path, typer.Argument(help="A trained model folder (or a base chat model: smollm2 or its "
                                             "folder).")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to predict (QA: use --question with "
                                                            "one context text).")] = None,
    data: Annotated[Path | None, typer.Option(help="A data file to predict instead of TEXTS.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write predictions as JSONL here.")] = None,
    question: Annotated[str | None, typer.Option(help="QA: the question to ask of each text.")] = None,
    batch_size: BatchOpt = 64,
    max_new_tokens: MaxNewTokensOpt = None, temperature: TemperatureOpt = None, top_p: TopPOpt = None,
    top_k: TopKOpt = None, repetition_penalty: RepetitionPenaltyOpt = None, seed: SeedOpt = None,
    stop: StopOpt = None,
    text_column: TextCol = None, text_pair_column: PairCol = None, tokens_column: TokensCol = None,
    question_column: QuestionCol = None, context_column: ContextCol = None, backend: BackendOpt = None,
) -> None:
    """Predict labels, entities (with character spans) or answers (with spans); a generation model writes the
    reply to each text (a user message), greedily unless --temperature is given."""
    offline()
    from tuneforge.utils.fs import write_jsonl

    backend = _backend(run, backend)
    if backend == "torch":
        predictor = load_generator_or_run(run)
    else:
        from tuneforge.inference.backends import load_run_predictor

        _check_backend_target(run)
        predictor = load_run_predictor(run, backend)
    task = predictor.task
    options = _generation_flags(task, {"max_new_tokens": max_new_tokens, "temperature": temperature,
                                       "top_p": top_p, "top_k": top_k, "repetition_penalty": repetition_penalty,
                                       "seed": seed, "stop": stop})
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
        preds = [task.public_prediction(p) for p in preds]
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


def _backend(run: Path, backend: str | None) -> str:
    """The backend asked for (checked by name), or the default: onnx for an ONNX export folder, torch otherwise."""
    from tuneforge.inference.backends import get_backend
    from tuneforge.inference.backends.onnx_runtime import is_export_folder

    if backend is None:
        return "onnx" if is_export_folder(run) else "torch"
    get_backend(backend)  # an unknown name is refused with the choices
    return backend


def _check_backend_target(run: Path) -> None:
    """A run folder (checked) or an ONNX export folder: what a backend other than torch loads."""
    from tuneforge.inference.backends.onnx_runtime import is_export_folder

    if not is_export_folder(run):
        check_run(run)


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
    if "finish_reason" in p or set(p) == {"text"}:  # a generated reply
        return f"{shown}\n  {escape(p['text'])}"
    if "answer" in p:
        return f"{shown}\n  answer: {escape(repr(p['answer']))} at {p['start']}-{p['end']} ({p['score']:.3f})"
    return f"{shown}\n  {escape(json.dumps(p, ensure_ascii=False))}"
