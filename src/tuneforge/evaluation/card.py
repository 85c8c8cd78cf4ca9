"""Model cards: a run folder's ``README.md`` in the Hugging Face model-card format, generated from its manifest.

:func:`build_card` is a pure function of the manifest (``tuneforge.json``) and the run's evaluations
(``eval-*/metrics.json``): YAML front matter (``language``, ``license`` of the base model, ``tags``, ``datasets`` by
fingerprint, ``base_model``, ``pipeline_tag``, ``model-index`` with every evaluation's metrics) and the sections
intended use, training data, training procedure (every hyperparameter), evaluation results (with slices where an
evaluation has them), limitations and biases, privacy (differential privacy and PII masking, where used) and
environmental cost (training time, hardware).

When it is written: training writes the card as the run is finalised (before the manifest, so a finished run
always has one); ``tuneforge evaluate RUN`` rewrites it when the report goes into the run folder (the default), so
the card lists that evaluation too; ensembles, exports and pretraining runs get one when they are written.
Paths are shown by their file name only: a card served by the API names no server folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import yaml

from tuneforge.runs import manifest_path
from tuneforge.utils.fs import atomic_write_text

__all__ = ["CARD", "base_model_card", "build_card", "read_card", "read_evaluations", "write_card"]

CARD = "README.md"
#: a task's model head -> the Hugging Face pipeline tag of its models
_PIPELINE_TAGS = {"sequence-classification": "text-classification", "token-classification": "token-classification",
                  "question-answering": "question-answering", "causal-lm": "text-generation",
                  "masked-lm": "fill-mask"}
_MAX_LABELS = 60
_MAX_SLICE_COLUMNS = 4


def _name(value: Any) -> str:
    """A path shown as its file or folder name (a card names no server folder)."""
    text = str(value)
    return PurePath(text).name or text if ("/" in text or "\\" in text) else text


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}".rstrip("0").rstrip(".") or "0"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "—"
    return _name(value).replace("|", "\\|").replace("\n", " ")


def _licence_id(licence: str) -> str:
    """A registry licence text ("MIT", "Apache-2.0 (model card; ...)") as a Hugging Face licence id."""
    first = licence.split()[0].strip(",;") if licence.strip() else ""
    return first.lower() if first else "unknown"


def _languages(language: str) -> list[str]:
    """The registry's language description as language codes ("English" -> en; "Chinese + ~100 languages" ->
    multilingual, zh, en)."""
    text = language.lower()
    codes = ["multilingual"] if "languages" in text or "multilingual" in text else []
    for word, code in (("chinese", "zh"), ("english", "en")):
        if word in text:
            codes.append(code)
    return codes


def _base_specs(manifest: Mapping[str, Any]) -> list[Any]:
    """The registered base models the run was made from (an ensemble's members' bases), where known."""
    from tuneforge.models.registry import BASE_MODELS

    base = manifest.get("base_model") or {}
    names = [base.get("name")]
    if manifest.get("method") == "ensemble":
        names = [n.strip() for n in str(base.get("model_id", "")).split(",")]
    specs = [BASE_MODELS.get(str(n)) for n in names]
    return specs if specs and all(s is not None for s in specs) else []


def _pipeline_tag(task_name: str) -> str | None:
    from tuneforge.errors import ConfigError
    from tuneforge.tasks import get_task

    try:
        task = get_task(task_name)
    except ConfigError:  # a pretraining run (masked-lm) is no registered task
        return _PIPELINE_TAGS.get(task_name)
    return _PIPELINE_TAGS.get(task.auto_model_kind)


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "n"}


def _evaluation_results(manifest: Mapping[str, Any],
                        evaluations: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(dataset name, split, metrics) of each evaluation: the run's reports, or the manifest's dev metrics when
    no report is at hand."""
    dev_file = ((manifest.get("data") or {}).get("eval") or {}).get("path")
    dev_stem = PurePath(str(dev_file)).stem if dev_file else None
    results = []
    for name, metrics in sorted(evaluations.items()):
        split = "validation" if dev_stem is not None and name == "".join(
            ch if ch.isalnum() or ch in "-_." else "_" for ch in dev_stem) else "test"
        results.append((name, split, dict(metrics)))
    dev = (manifest.get("metrics") or {}).get("dev")
    if dev and not any(split == "validation" for _, split, _ in results):
        results.insert(0, (dev_stem or "dev", "validation", dict(dev)))
    pretrain = manifest.get("pretrain") or {}
    if "eval_loss_after" in pretrain:  # masked-LM pretraining: its held-out texts
        results.insert(0, ("held-out", "validation", {
            "masked_lm_loss": pretrain["eval_loss_after"], "perplexity": pretrain.get("eval_perplexity_after"),
            "n": (manifest.get("data") or {}).get("held_out_texts")}))
    return results


def _front_matter(manifest: Mapping[str, Any], results: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    specs = _base_specs(manifest)
    languages: list[str] = []
    for s in specs:
        languages += [c for c in _languages(s.language) if c not in languages]
    licences = sorted({_licence_id(s.licence) for s in specs})
    task_name = str(manifest.get("task", ""))
    pipeline = _pipeline_tag(task_name)
    tags = ["tuneforge", *(t for t in (pipeline, task_name, manifest.get("method")) if t)]
    if manifest.get("privacy"):
        tags.append("differential-privacy")
    if manifest.get("federated"):
        tags.append("federated-learning")
    data = manifest.get("data") or {}
    if any(isinstance(d, dict) and d.get("pii_masked") is not None for d in data.values()):
        tags.append("pii-masked")
    front: dict[str, Any] = {}
    if languages:
        front["language"] = languages
    front["license"] = licences[0] if len(licences) == 1 else "other" if licences else "unknown"
    front["library_name"] = "transformers"
    front["tags"] = list(dict.fromkeys(str(t) for t in tags))
    fingerprints = [d["sha256"] for d in data.values() if isinstance(d, dict) and d.get("sha256")]
    if fingerprints:
        front["datasets"] = list(dict.fromkeys(fingerprints))
    if len(specs) == 1 and manifest.get("method") != "ensemble":
        front["base_model"] = specs[0].model_id
    if pipeline:
        front["pipeline_tag"] = pipeline
    entries = []
    for name, split, metrics in results:
        numbers = _numbers(metrics)
        if not numbers:
            continue
        task = {"type": pipeline or task_name, "name": task_name}
        entries.append({"task": task, "dataset": {"name": name, "type": name, "split": split},
                        "metrics": [{"type": k, "name": k, "value": round(v, 6)} for k, v in numbers.items()]})
    front["model-index"] = [{"name": str(manifest.get("name", "model")), "results": entries}]
    return front


def _table(rows: list[tuple[Any, Any]], head: tuple[str, str] = ("", "")) -> list[str]:
    return [f"| {head[0]} | {head[1]} |", "|---|---|", *(f"| {_fmt(k)} | {_fmt(v)} |" for k, v in rows)]


def _intended_use(manifest: Mapping[str, Any]) -> list[str]:
    base = manifest.get("base_model") or {}
    labels = list(manifest.get("labels") or [])
    method = manifest.get("method", "full")
    md = ["## Intended use", "",
          f"A **{manifest.get('task')}** model fine-tuned with TuneForge ({method}) from the base model "
          f"`{_name(base.get('name', 'unknown'))}`" + (f" (`{_name(base['model_id'])}`)" if base.get("model_id")
                                                       and _name(base["model_id"]) != _name(base.get("name", ""))
                                                       else "") + "."]
    if labels:
        shown = ", ".join(f"`{x}`" for x in labels[:_MAX_LABELS])
        more = f" and {len(labels) - _MAX_LABELS} more" if len(labels) > _MAX_LABELS else ""
        md += ["", f"It predicts {len(labels)} labels" + (" (several per text)" if manifest.get("multi_label")
                                                          else "") + f": {shown}{more}."]
    md += ["", "Use it on text like its training data (the same language, domain and length), through "
               "`tuneforge predict`, `tuneforge serve` (`/v1/predict`) or plain transformers where the method "
               "allows. It is not meant for decisions about people without a human review, nor for data unlike "
               "what it was trained and evaluated on."]
    if manifest.get("confidence"):
        md += ["", "It answers with its out-of-scope label when a reject option fitted on the dev set says an input "
                   "is unlike the known classes (see the manifest's `confidence`)."]
    return md


def _training_data(manifest: Mapping[str, Any]) -> list[str]:
    data = manifest.get("data") or {}
    if "path" in data:  # pretraining: one corpus
        data = {"corpus": {"path": data["path"], "format": "text", "examples": data.get("train_texts")}}
    md = ["## Training data", ""]
    rows = []
    for part, d in data.items():
        if not isinstance(d, dict):
            continue
        size = d.get("examples", d.get("texts", d.get("train_texts")))
        rows.append(f"| {part} | {_fmt(d.get('path', '—'))} | {_fmt(d.get('format', '—'))} | {_fmt(size)} | "
                    f"`{d.get('sha256', '—')}` |")
    if rows:
        md += ["| part | file | format | examples | fingerprint |", "|---|---|---|---|---|", *rows]
    else:
        md += ["Not recorded in the manifest" + (" (an ensemble of runs: see their members' cards)." if
                                                 manifest.get("method") == "ensemble" else ".")]
    augmented = (data.get("train") or {}).get("augmented_rows") if isinstance(data.get("train"), dict) else None
    if augmented:
        md += ["", f"The training data was augmented with {augmented} EDA rows (dev data untouched)."]
    if manifest.get("method") == "ensemble":
        members = (manifest.get("method_info") or {}).get("members") or []
        md += ["", f"Members ({len(members)}): " + ", ".join(f"`{_name(m)}`" for m in members)]
    md += ["", "Fingerprints are the SHA-256 of each file's normalized examples (`tuneforge data check` prints it), "
               "so a copy of the data can be matched to this model without the data being published."]
    return md


def _flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in config.items():
        if isinstance(v, dict):
            rows += _flatten(v, f"{prefix}{k}.")
        else:
            rows.append((f"{prefix}{k}", v))
    return rows


def _procedure(manifest: Mapping[str, Any]) -> list[str]:
    md = ["## Training procedure", ""]
    resolved = manifest.get("resolved") or {}
    training = manifest.get("training") or {}
    pretrain = manifest.get("pretrain") or {}
    if resolved:
        md += ["Hyperparameters as used (auto values resolved):", "", *_table(list(resolved.items()),
                                                                            ("hyperparameter", "value"))]
    if pretrain:
        md += ["Masked-LM pretraining:", "", *_table(list(pretrain.items()), ("setting", "value"))]
    summary = [(k, training.get(k)) for k in ("steps", "epochs", "best_step", "stopped_early", "final_loss",
                                              "parameters", "trainable_parameters", "trainable_share",
                                              "saved_bytes") if k in training]
    if summary:
        md += ["", "Run:", "", *_table(summary, ("", "value"))]
    info = {k: v for k, v in (manifest.get("method_info") or {}).items() if not isinstance(v, dict | list)}
    if info:
        md += ["", f"Method `{manifest.get('method')}`:", "", *_table(list(info.items()), ("", "value"))]
    config = manifest.get("config")
    if isinstance(config, dict) and config:
        md += ["", "<details><summary>Every option of the run (its configuration, defaults included)</summary>", "",
               *_table(_flatten(config), ("option", "value")), "", "</details>"]
    versions = manifest.get("versions") or {}
    if versions:
        md += ["", "Software: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    return md


def _slice_tables(slices: Mapping[str, Any], main: str | None) -> list[str]:
    """Each slicer's slices as a table (n and the first metrics), then its other figures (gaps, fairness
    differences, flags) as a list."""
    md: list[str] = []
    for slicer, groups in slices.items():
        if not isinstance(groups, dict):
            md += ["", f"- {_fmt(slicer)}: {_fmt(groups)}"]
            continue
        rows = {k: v for k, v in groups.items() if isinstance(v, dict)}
        extra = {k: v for k, v in groups.items() if not isinstance(v, dict)}
        cols: list[str] = []
        for m in rows.values():
            cols += [k for k in _numbers(m) if k not in cols]
        if main in cols:
            cols.remove(main)
            cols.insert(0, main)
        cols = cols[:_MAX_SLICE_COLUMNS]
        md += ["", f"Sliced by **{_fmt(slicer)}**:", ""]
        if rows:
            md += ["| slice | n | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
            md += [f"| {_fmt(name)} | {_fmt(m.get('n'))} | " + " | ".join(_fmt(m.get(c)) for c in cols) + " |"
                   for name, m in rows.items()]
        md += [f"- {_fmt(k)}: {_fmt(v)}" for k, v in extra.items()]
    return md


def _main_metric(task_name: str) -> str | None:
    from tuneforge.errors import ConfigError
    from tuneforge.tasks import get_task

    try:
        return str(get_task(task_name).main_metric)
    except ConfigError:
        return None


def _results(manifest: Mapping[str, Any], results: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    md = ["## Evaluation results", ""]
    if not results:
        return md + ["No evaluation yet: run `tuneforge evaluate RUN --data TEST_FILE` (the report goes into the run "
                     "folder and this card is refreshed with it)."]
    main = _main_metric(str(manifest.get("task", "")))
    for name, split, metrics in results:
        numbers = _numbers(metrics)
        n = metrics.get("n")
        md += [f"### {_fmt(name)} ({split}{f', {n} examples' if n is not None else ''})", "",
               *_table(list(numbers.items()), ("metric", "value"))]
        slices = metrics.get("slices")
        if isinstance(slices, dict) and slices:
            md += _slice_tables(slices, main)
        md += [""]
    return md[:-1]


def _limitations(manifest: Mapping[str, Any], results: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    data = manifest.get("data") or {}
    train = data.get("train") if isinstance(data.get("train"), dict) else {}
    md = ["## Limitations and biases", "",
          "The model learned from its training data and its base model's pretraining corpus, and repeats their "
          "gaps and biases: groups, dialects, topics or languages that are rare there are served less well. The "
          "figures above hold for data like the evaluation data only."]
    n = (train or {}).get("examples")
    if isinstance(n, int) and n < 1000:
        md += ["", f"It was trained on {n} examples: expect noticeably lower accuracy on inputs unlike them."]
    specs = _base_specs(manifest)
    if specs:
        md += ["", "Base model language: " + "; ".join(f"{s.name}: {s.language}" for s in specs) + "."]
    main = _main_metric(str(manifest.get("task", "")))
    for name, _, metrics in results:
        slices = metrics.get("slices")
        overall = metrics.get(main) if main else None
        if not isinstance(slices, dict) or not isinstance(overall, int | float):
            continue
        weak = [(slicer, value, m[main]) for slicer, groups in slices.items() if isinstance(groups, dict)
                for value, m in groups.items() if isinstance(m, dict) and isinstance(m.get(main), int | float)
                and m[main] < overall - 0.05]
        if weak:
            md += ["", f"Slices of {_fmt(name)} more than 5 points below the overall {main} ({_fmt(overall)}): "
                   + ", ".join(f"{_fmt(s)}={_fmt(v)} ({_fmt(x)})" for s, v, x in weak[:10]) + "."]
    return md


def _privacy(manifest: Mapping[str, Any]) -> list[str]:
    md = ["## Privacy", ""]
    privacy = manifest.get("privacy")
    if isinstance(privacy, dict) and privacy:
        eps, delta = privacy.get("epsilon"), privacy.get("delta")
        md += [f"Trained with differential privacy (DP-SGD through Opacus): ε = {_fmt(eps)}, δ = {_fmt(delta)}, "
               f"accountant {_fmt(privacy.get('accountant'))}. Any one training example changes what the model "
               "learns by a bounded amount, so the model reveals little about any one of them.", ""]
        extra = {k: v for k, v in privacy.items() if k not in ("epsilon", "delta", "accountant")}
        if extra:
            md += [*_table(list(extra.items()), ("", "value")), ""]
    else:
        md += ["Trained without differential privacy: a model can memorise rare training examples (names, numbers) "
               "and repeat them. Train with `--dp-epsilon` where the data is personal.", ""]
    data = manifest.get("data") or {}
    masked = {part: d["pii_masked"] for part, d in data.items() if isinstance(d, dict) and "pii_masked" in d}
    if masked:
        md += ["Personal data was masked before training (`mask_pii`): " + "; ".join(
            f"{part}: " + (", ".join(f"{n} {k}" for k, n in counts.items()) or "none found")
            for part, counts in masked.items()) + "."]
    else:
        md += ["The training data was not masked for personal data by TuneForge (`tuneforge data check` reports "
               "what it finds; `--mask-pii` masks it)."]
    return md


def _environment(manifest: Mapping[str, Any]) -> list[str]:
    training = manifest.get("training") or {}
    pretrain = manifest.get("pretrain") or {}
    hardware = manifest.get("hardware") or {}
    rows: list[tuple[str, Any]] = []
    for k in ("train_seconds", "wall_seconds", "train_examples_per_second"):
        if training.get(k) is not None:
            rows.append((k, training[k]))
    if pretrain.get("train_seconds") is not None:
        rows.append(("train_seconds", pretrain["train_seconds"]))
    if (manifest.get("resolved") or {}).get("precision"):
        rows.append(("precision", manifest["resolved"]["precision"]))
    rows += [(f"hardware.{k}", v) for k, v in hardware.items()]
    md = ["## Environmental cost", ""]
    if rows:
        md += [*_table(rows, ("", "value")), ""]
    md += ["Energy was not metered; the time and hardware above bound it (one training run, no hyperparameter "
           "search counted)." if rows else "Training time and hardware were not recorded for this run."]
    return md


def build_card(manifest: Mapping[str, Any], evaluations: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The model card (markdown with YAML front matter) of the run ``manifest`` describes; ``evaluations`` maps
    an evaluation's name (its ``eval-<name>`` folder) to its ``metrics.json``."""
    results = _evaluation_results(manifest, evaluations or {})
    front = yaml.safe_dump(_front_matter(manifest, results), allow_unicode=True, sort_keys=False, width=1000)
    title = _name(manifest.get("name", "model"))
    md = ["---", front.rstrip("\n"), "---", "", f"# {title}", "",
          f"Model card generated by TuneForge from `tuneforge.json` (created {manifest.get('created_at', '—')}).", "",
          *_intended_use(manifest), "", *_training_data(manifest), "", *_procedure(manifest), "",
          *_results(manifest, results), "", *_limitations(manifest, results), "", *_privacy(manifest), "",
          *_environment(manifest)]
    return "\n".join(md) + "\n"


def read_evaluations(run_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The run's evaluation reports: ``{name: metrics.json}`` of each ``eval-<name>`` folder (unreadable ones are
    skipped: a card is never refused for a damaged report)."""
    found: dict[str, dict[str, Any]] = {}
    for d in sorted(Path(run_dir).glob("eval-*")):
        try:
            metrics = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(metrics, dict):
            found[d.name.removeprefix("eval-")] = metrics
    return found


def write_card(run_dir: str | os.PathLike[str], manifest: Mapping[str, Any] | None = None, *,
               dest: str | os.PathLike[str] | None = None) -> Path:
    """Write the card of ``run_dir`` (its manifest unless given, its ``eval-*`` reports) atomically to
    ``dest`` (a folder; default the run folder) as ``README.md``; returns the file."""
    if manifest is None:
        manifest = json.loads(manifest_path(run_dir).read_text(encoding="utf-8"))
    path = Path(dest if dest is not None else run_dir) / CARD
    atomic_write_text(path, build_card(manifest, read_evaluations(run_dir)))
    return path


def read_card(run_dir: str | os.PathLike[str]) -> str:
    """The card of a finished run: its ``README.md``, or (a run trained before cards existed, or one whose card
    was removed) the card built from its manifest now, without writing it."""
    from tuneforge.runs import read_manifest

    path = Path(run_dir) / CARD
    if path.is_file():
        return path.read_text(encoding="utf-8")
    return build_card(read_manifest(run_dir, require_weights=False), read_evaluations(run_dir))


def base_model_card(name: str) -> str:
    """A short card for a registered base model (what the registry knows of it)."""
    from tuneforge.models.registry import BASE_MODELS

    spec = BASE_MODELS.get(name)
    if spec is None:  # a base model the operator added (a local folder): only its name is known
        return (f"---\nlibrary_name: transformers\ntags:\n- tuneforge\n- base-model\n---\n\n# {_name(name)}\n\n"
                "A base model provided by this server's operator; ask them for its licence, languages and the model "
                "card of its pretraining.\n")
    front = {"language": _languages(spec.language) or None, "license": _licence_id(spec.licence),
             "library_name": "transformers", "tags": ["tuneforge", "base-model", spec.kind],
             "base_model": spec.model_id}
    front = {k: v for k, v in front.items() if v}
    md = ["---", yaml.safe_dump(front, allow_unicode=True, sort_keys=False).rstrip("\n"), "---", "",
          f"# {spec.name}", "", spec.description, "",
          *_table([("model", spec.model_id), ("language", spec.language), ("parameters", spec.params),
                   ("licence", spec.licence), ("kind", spec.kind), ("package", spec.pip)], ("", "")), "",
          "A base model: fine-tune it with `tuneforge train --base-model " + spec.name + "`; its own model card (on "
          "the Hugging Face Hub, under the model id above) describes its pretraining data and limitations."]
    return "\n".join(md) + "\n"
