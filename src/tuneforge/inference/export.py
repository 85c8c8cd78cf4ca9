"""Export a run as a plain transformers model: adapters merged into the base weights where the method allows.

A generative run exports as a folder ``transformers.pipeline("text-generation", model=folder)`` chats with:
weights, tokenizer with its chat template, and a ``generation_config.json`` that stops at the end-of-turn token.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, RunError
from tuneforge.runs import read_manifest, write_manifest
from tuneforge.utils.fs import atomic_dir

__all__ = ["export_merged"]


def export_merged(run_dir: str | Path, output: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Write ``run_dir``'s model with its method merged in (LoRA, AdaLoRA, IA3 ...) as a ``full`` run folder that
    plain transformers (``pipeline``, ``AutoModelFor...``) loads; refuses methods that cannot merge."""
    from tuneforge.inference.predictor import Predictor, load_predictor
    from tuneforge.methods import get_method

    run_dir, output = Path(run_dir), Path(output)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise RunError(f"{output} already exists.", hint="Choose another --output, or pass --overwrite.")
    predictor = load_predictor(run_dir)
    if not isinstance(predictor, Predictor):
        raise ConfigError("method: an ensemble is several models; it cannot be merged into one")
    manifest = dict(predictor.manifest)
    method = get_method(manifest.get("method", "full"))
    if method.own_loop:
        raise ConfigError(f"method: {method.name} models are a sentence encoder with their own head; serve the run "
                          "folder as it is")
    merged = method.merge(predictor.model)
    if predictor.task.generative:
        _stop_at_end_of_turn(merged, predictor.tokenizer)
    with atomic_dir(output, overwrite=overwrite) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        predictor.tokenizer.save_pretrained(str(tmp))
        manifest.update({"name": output.name, "method": "full",
                         "merged_from": {"run": str(run_dir), "method": method.name}})
        write_manifest(tmp, manifest)
        for extra in run_dir.glob("eval-*"):
            shutil.copytree(extra, tmp / extra.name)
    return read_manifest(output)


def _stop_at_end_of_turn(model: Any, tokenizer: Any) -> None:
    """A generative model's ``generation_config`` (saved as generation_config.json) ends a reply at every
    end-of-turn token training learned, and pads with the tokenizer's pad token: what ``transformers.pipeline``
    and ``model.generate`` read, so a plain load stops where ``tuneforge predict`` stops."""
    from tuneforge.tasks.generation import end_of_turn_ids, pad_token_id

    config = model.generation_config
    eos = sorted(end_of_turn_ids(tokenizer, config))
    if eos:
        config.eos_token_id = eos[0] if len(eos) == 1 else eos
    config.pad_token_id = pad_token_id(tokenizer)
