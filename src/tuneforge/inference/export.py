"""Export a run as a plain transformers model: adapters merged into the base weights where the method allows."""

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
    with atomic_dir(output, overwrite=overwrite) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        predictor.tokenizer.save_pretrained(str(tmp))
        manifest.update({"name": output.name, "method": "full",
                         "merged_from": {"run": str(run_dir), "method": method.name}})
        write_manifest(tmp, manifest)
        for extra in run_dir.glob("eval-*"):
            shutil.copytree(extra, tmp / extra.name)
    return read_manifest(output)
