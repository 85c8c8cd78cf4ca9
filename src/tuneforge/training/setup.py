"""Setting a run up, before any training step: the data read and validated, the base model and tokenizer, the
knobs left as auto filled in, the features tokenized (and, for distillation, the teacher's probabilities attached).
Everything here fails fast and writes nothing, so a bad file or option costs no output folder."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from tuneforge.data import ColumnMap, Dataset
from tuneforge.errors import ConfigError, DataError, DataProblem
from tuneforge.methods import Method, get_method
from tuneforge.models.registry import ResolvedModel
from tuneforge.runs import resolve_base_model
from tuneforge.settings import Settings
from tuneforge.tasks import Encoded, Task, get_task, load_dataset
from tuneforge.tasks.generation.budget import auto_epochs
from tuneforge.tasks.generation.template import length_problems
from tuneforge.training.config import TrainConfig
from tuneforge.utils.hf import max_positions

__all__ = ["SHORT_RUN_EXAMPLES", "TEXT_TASK", "Prepared", "auto_freeze_layers", "auto_hyperparameters",
           "encoder_parameters", "load_training_data", "prepare", "read_texts", "resolve_epochs", "total_steps"]


@dataclass
class Prepared:
    """A run ready to train: validated data, labels, base model, tokenizer, features and resolved knobs."""

    config: TrainConfig
    task: Task
    base: ResolvedModel
    train_ds: Dataset
    eval_ds: Dataset | None
    labels: list[str]
    multi_label: bool
    tokenizer: Any
    train_enc: Encoded
    eval_enc: Encoded | None
    hp: dict[str, Any] = field(default_factory=dict)
    method: Method | None = None
    unlabeled: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    #: the features the Trainer trains on: ``train_enc``'s, with the teacher's probabilities when distilling
    train_features: list[dict[str, Any]] = field(default_factory=list)


def encoder_parameters(model_config: dict[str, Any]) -> int:
    """Approximate parameters of the transformer layers (embeddings excluded) from a config.json."""
    h = int(model_config.get("hidden_size", 384))
    layers = int(model_config.get("num_hidden_layers", 6))
    ffn = int(model_config.get("intermediate_size", 4 * h))
    return layers * (4 * h * h + 2 * h * ffn)


def auto_hyperparameters(config: TrainConfig, *, n_train: int, model_config: dict[str, Any], model_max: int,
                         task: Task) -> dict[str, Any]:
    """The knobs left as auto, filled in: learning rate and batch size as the task picks them for the size of the
    encoder (embeddings excluded) and of the data (see ``tuneforge.tasks.encoder``), max_length by task capped by
    the model, and the layers to freeze; an explicit value always wins."""
    auto = task.auto_hyperparameters(n_train=n_train, encoder_size=encoder_parameters(model_config))
    lr = config.learning_rate if config.learning_rate is not None else auto["learning_rate"]
    # a method whose examples are several sequences (DPO: a chosen and a rejected answer) takes fewer per batch
    per_example = int(getattr(get_method(config.method), "sequences_per_example", 1))
    bs = config.batch_size if config.batch_size is not None else max(1, auto["batch_size"] // per_example)
    max_len = min(config.max_length or task.default_max_length, model_max)
    return {"learning_rate": lr, "batch_size": bs, "max_length": max_len,
            "freeze_layers": auto_freeze_layers(config, n_train=n_train, model_config=model_config)}


#: runs that see at most this many training examples (epochs x examples) freeze their lower layers (auto)
SHORT_RUN_EXAMPLES = 10_000


def auto_freeze_layers(config: TrainConfig, *, n_train: int, model_config: dict[str, Any]) -> int:
    """``freeze_layers: auto``: the lower third of the encoder stays fixed in a short full fine-tuning run.

    A short run moves the lower layers little, and most of its time goes to their backward pass and their
    optimizer updates: on 2,000 SST-2 sentences (1 epoch, minilm, batch 16) freezing the embeddings and layers
    0-1 cuts training time by about a fifth at the same validation accuracy (0.801 against 0.802, 3 seeds),
    and on 400 sentences (3 epochs) it acts as a regularizer (0.783 against 0.771, 3 seeds, best epoch picked on
    the validation set itself). Longer runs, methods that leave the encoder's weights alone (LoRA, adapters ...)
    and runs that train the embeddings freeze nothing; a number always wins."""
    if config.freeze_layers != "auto":
        return int(config.freeze_layers)
    if get_task(config.task).generative:  # an encoder heuristic; a causal LM's lower layers are not spare
        return 0
    if not get_method(config.method).trains_encoder or not config.freeze_embeddings:
        return 0
    if resolve_epochs(config, n_train) * n_train > SHORT_RUN_EXAMPLES:
        return 0
    return int(model_config.get("num_hidden_layers", 0)) // 3


def resolve_epochs(config: TrainConfig, n_train: int) -> float:
    """The epochs a run trains: the number given, or for ``auto`` OpenAI's rule for ``n_train`` examples (3,
    raised or lowered so that examples x epochs is 100 to 25,000)."""
    if config.epochs == "auto":
        return float(auto_epochs(max(1, n_train)))
    return float(config.epochs)


def _resolved_config(config: TrainConfig, task: Task, epochs: float) -> TrainConfig:
    """The configuration the run applies: ``epochs: auto`` as its number, and for a causal LM (no new task head)
    the head's learning-rate multiplier as 1 (the config refuses any other value for it)."""
    update: dict[str, Any] = {"epochs": epochs}
    if task.generative:
        update["head_lr_multiplier"] = 1.0
    return config.model_copy(update=update)


def total_steps(n_features: int, batch_size: int, c: TrainConfig) -> int:
    """Optimizer steps of the whole run."""
    per_epoch = math.ceil(n_features / max(1, batch_size * c.grad_accum))
    return max(1, int(math.ceil(per_epoch * resolve_epochs(c, n_features))))  # prepare resolved an auto already


def load_training_data(task: str, data: Path | str, eval_data: Path | str | None = None, *,
                       columns: ColumnMap | None = None, multi_label: bool | None = None,
                       label_separator: str | None = None, lenient_bio: bool = False, delimiter: str | None = None,
                       encoding: str | None = None, strict: bool = True) -> tuple[Dataset, Dataset | None]:
    """Load and validate training and dev data as a run will use them; problems in both files are reported
    together in one DataError. (The service validates uploads with this same function.) ``delimiter`` and
    ``encoding`` apply to both files (None: detected). With ``strict=False`` (what ``tuneforge train`` does unless
    ``--strict``), QA answer offsets that are a little off are repaired and answers that cannot be located dropped,
    with warnings; the service's checks keep the default, ``strict``."""
    problems: list[DataProblem] = []
    train_ds = eval_ds = None
    common: dict[str, Any] = dict(columns=columns, multi_label=multi_label, label_separator=label_separator,
                                  strict_bio=not lenient_bio, delimiter=delimiter, encoding=encoding,
                                  repair_offsets=not strict)
    try:
        train_ds = load_dataset(data, task, require_labels=True, min_classes=2, **common)
    except DataError as e:
        problems += e.problems
    if eval_data is not None:
        # dev labels of a sequence-level task must come from the training label set (a typo is a new class)
        closed = get_task(task).sequence_level
        label_set = train_ds.labels if train_ds is not None and closed else None
        try:
            eval_ds = load_dataset(eval_data, task, require_labels=True, label_set=label_set,
                                   **{**common, "multi_label": train_ds.multi_label if train_ds else multi_label})
        except DataError as e:
            problems += e.problems
        problems += _augmented_rows(Path(eval_data))
    if problems:
        # column mapping helps only with what is in the records, not with a missing, binary or unreadable file
        in_records = any(p.field for p in problems)
        raise DataError(problems, hint="Fix these lines (or map the right columns with --text-column, "
                                       "--label-column ...) and run the command again." if in_records else
                                       "Fix the file and run the command again.")
    assert train_ds is not None
    return train_ds, eval_ds


def _augmented_rows(path: Path) -> list[DataProblem]:
    """Rows marked ``augmented`` (by `tuneforge data augment`) must never be dev or test data."""
    if path.suffix != ".jsonl" or not path.is_file():
        return []
    problems = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if '"augmented"' in line:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and row.get("augmented"):
                    problems.append(DataProblem(str(path), i, "augmented", "an augmented row in dev data",
                                                "evaluate on original rows only; augmented rows are for training"))
                    if len(problems) >= 5:
                        break
    return problems


#: the task whose reader finds the text column of any data file (labels ignored)
TEXT_TASK = "classification"


def read_texts(path: Path, *, option: str, at_least: int = 1, purpose: str = "this") -> list[str]:
    """Non-empty texts from a .txt file (one per line) or from the text column of any data file (labels ignored);
    a ConfigError naming ``option`` when the file is missing or holds fewer than ``at_least`` texts."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{option}: {path} does not exist")
    if path.suffix in (".txt", ".text"):
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    else:
        texts = [ex["text"] for ex in load_dataset(path, TEXT_TASK, require_labels=False, allow_empty=True).examples]
    texts = [t for t in texts if t]
    if at_least <= 1 and not texts:
        raise ConfigError(f"{option}: {path} holds no text")
    if len(texts) < at_least:
        raise ConfigError(f"{option}: {path} holds {len(texts)} texts; {purpose} needs at least {at_least}")
    return texts


def _mask_pii(train_ds: Dataset, eval_ds: Dataset | None,
              console: Console) -> tuple[Dataset, Dataset | None, dict[str, dict[str, int]]]:
    """``mask_pii``: the training and dev data with their personal data masked (:mod:`tuneforge.data.pii`), and
    the counts per type of each, for the manifest."""
    from tuneforge.data.pii import PiiDetector, mask_dataset

    with console.status("Masking personal data..."):
        detector = PiiDetector()
        train_ds, found = mask_dataset(train_ds, detector)
        counts = {"train": dict(found.counts)}
        if eval_ds is not None:
            eval_ds, found_dev = mask_dataset(eval_ds, detector)
            counts["eval"] = dict(found_dev.counts)
    console.print("Masked personal data: " + "; ".join(
        f"{part} {', '.join(f'{n} {k}' for k, n in c.items()) or 'none'}" for part, c in counts.items()))
    return train_ds, eval_ds, counts


def prepare(config: TrainConfig, settings: Settings, console: Console) -> Prepared:
    """Everything a run needs before its first step; raises (DataError, ConfigError, RunError) before any file is
    written."""
    from transformers import AutoTokenizer

    task = get_task(config.task)
    # Check the cheap things first so that a typo fails in milliseconds, not after a model load.
    with console.status("Reading and validating data..."):
        train_ds, eval_ds = load_training_data(
            task.name, config.data, config.eval_data, columns=ColumnMap(**config.columns.model_dump()),
            multi_label=config.multi_label, label_separator=config.label_separator, lenient_bio=config.lenient_bio,
            delimiter=config.delimiter, encoding=config.encoding, strict=config.strict)
    for w in train_ds.warnings + (eval_ds.warnings if eval_ds is not None else []):
        console.print(f"[yellow]warning:[/] {escape(str(w))}")  # e.g. the encoding a file was read as
    unlabeled = read_texts(config.unlabeled_data, option="unlabeled_data") if config.unlabeled_data else []
    method = get_method(config.method)
    with console.status(f"Loading base model {config.base_model}..."):
        requested = resolve_base_model(config.base_model, settings.cache_dir)
        base, note = method.base_model(config, requested, settings)
        tokenizer = AutoTokenizer.from_pretrained(str(base.path))
    notes: dict[str, Any] = {}
    if note:
        console.print(f"[yellow]note:[/] {note}")
        notes["base_model_note"] = note
        notes["requested_base_model"] = requested.name
    if config.mask_pii:  # before augmentation, so that no augmented copy carries what was masked
        train_ds, eval_ds, notes["pii_masked"] = _mask_pii(train_ds, eval_ds, console)
    if config.augment == "eda":
        from tuneforge.data.augment import EmbeddingSynonyms, augment_examples

        with console.status("Augmenting the training data (EDA)..."):
            synonyms = EmbeddingSynonyms.from_model_dir(base.path)
            n0 = len(train_ds.examples)
            train_ds.examples = augment_examples(train_ds.examples, synonyms=synonyms, copies=config.augment_copies,
                                                 rate=config.augment_rate, seed=config.seed)
        notes["augmented_rows"] = len(train_ds.examples) - n0
        console.print(f"Augmented {n0} training examples with {notes['augmented_rows']} EDA rows "
                      "(marked augmented; dev data untouched).")
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"base_model: {base.path} has no fast tokenizer (tokenizer.json); TuneForge needs one to "
                          "map predictions back to character offsets")
    multi_label = bool(train_ds.multi_label)
    labels = task.label_list(train_ds.examples, multi_label)
    model_config = json.loads((base.path / "config.json").read_text())
    hp = auto_hyperparameters(config, n_train=len(train_ds), model_config=model_config,
                              model_max=max_positions(base.path, tokenizer), task=task)
    hp["epochs"] = resolve_epochs(config, len(train_ds))
    if config.epochs == "auto":
        hp["epochs_rule"] = "auto"
        console.print(f"epochs: {hp['epochs']:g} (auto: OpenAI's rule for {len(train_ds)} examples)")
    config = _resolved_config(config, task, hp["epochs"])
    with console.status("Tokenizing..."):
        train_enc = task.encode(train_ds.examples, tokenizer, labels, max_length=hp["max_length"],
                                stride=config.stride, multi_label=multi_label)
        eval_enc = None
        if eval_ds is not None:
            eval_enc = task.encode(eval_ds.examples, tokenizer, labels, max_length=hp["max_length"],
                                   stride=config.stride, multi_label=multi_label)
    if task.generative:  # a conversation the model cannot read whole is refused, not cut (OpenAI's rule)
        context = max_positions(base.path, tokenizer)
        too_long = _over_context(train_enc, train_ds, context) + (
            _over_context(eval_enc, eval_ds, context) if eval_enc is not None and eval_ds is not None else [])
        if too_long:
            raise DataError(too_long, hint=f"{base.name} reads at most {context} tokens at once: shorten or split "
                                           "these conversations")
    if train_enc.truncated:
        console.print(f"[yellow]note:[/] {train_enc.truncated} of {len(train_ds)} training inputs are longer than "
                      f"max_length {hp['max_length']} and were {task.long_input_note}")
    p = Prepared(config, task, base, train_ds, eval_ds, labels, multi_label, tokenizer, train_enc, eval_enc, hp,
                 method=method, unlabeled=unlabeled, notes=notes, train_features=train_enc.features)
    if config.distill_from is not None:
        p.train_features = _with_teacher(p, console)
    return p


def _over_context(enc: Encoded, ds: Dataset, context: int) -> list[DataProblem]:
    """One problem per conversation whose rendered length (``meta["length"]``, before truncation) is over
    ``context``. Preference pairs are not checked here: their length is both answers' (each is rendered, and
    checked by ``data check``, on its own)."""
    lengths = [m.get("length") for m in enc.meta]
    pairs = any("rejected_input_ids" in f for f in enc.features[:1])
    if pairs or len(lengths) != len(ds) or any(not isinstance(n, int) for n in lengths):
        return []
    return length_problems([int(n) for n in lengths if isinstance(n, int)], ds.lines, context, file=ds.path)


def _with_teacher(p: Prepared, console: Console) -> list[dict[str, Any]]:
    """Training features with the teacher's probabilities attached; unlabelled texts join with label -100."""
    from tuneforge.inference.predictor import load_predictor

    c = p.config
    assert c.distill_from is not None
    teacher = load_predictor(c.distill_from)
    if not teacher.task.sequence_level or sorted(teacher.labels) != sorted(p.labels):
        raise ConfigError(f"distill_from: {c.distill_from} predicts labels {teacher.labels}, the data has "
                          f"{p.labels}; the teacher must be a classifier over the same labels")
    extra = [{"text": t, "text_pair": None, "label": None} for t in p.unlabeled]
    with console.status(f"The teacher labels {len(p.train_ds) + len(extra)} texts..."):
        probs = teacher.predict_proba(list(p.train_ds.examples) + extra)
    order = [teacher.labels.index(lab) for lab in p.labels]
    probs = probs[:, order]
    features = [dict(f) for f in p.train_enc.features]
    if extra:
        enc = p.task.encode(extra, p.tokenizer, p.labels, max_length=p.hp["max_length"], with_labels=False)
        for f in enc.features:
            f["labels"] = -100
        features += enc.features
    for f, row in zip(features, probs, strict=True):
        f["teacher_probs"] = [float(x) for x in row]
    console.print(f"Distilling from {c.distill_from} on {len(p.train_ds)} labelled + {len(extra)} unlabelled texts "
                  f"(alpha {c.distill_alpha}, temperature {c.distill_temperature}).")
    return features
