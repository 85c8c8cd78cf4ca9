"""Training, saving and loading bottleneck adapters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.methods.base import FitContext, FitResult, MethodDefaults
from tuneforge.methods.bottleneck.config import AdapterOptions
from tuneforge.methods.bottleneck.layer import insert_adapters
from tuneforge.methods.common import auto_model_class, head_module_names, no_own_loop

__all__ = ["BottleneckAdapters"]

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


def _trainable_names(model: Any) -> list[str]:
    heads = head_module_names(model)
    return [n for n, _ in model.named_parameters()
            if ".adapter." in n or "LayerNorm" in n or "layer_norm" in n
            or any(n == h or n.startswith(h + ".") for h in heads)]


class BottleneckAdapters(MethodDefaults):
    name = "adapter"
    summary = ("Bottleneck adapters after the attention and feed-forward sublayers (Houlsby): adapters, layer "
               "norms and head train; not mergeable (non-linear).")
    options_class = AdapterOptions
    own_loop = False
    mergeable = False
    reload_best = True
    lr_scale = 5.0

    def prepare(self, model: Any, config: Any, task: Any, *, total_steps: int = 100) -> Any:
        size = self.options(config).adapter_size
        wrapped = insert_adapters(model, size)
        trainable = set(_trainable_names(model))
        for n, p in model.named_parameters():
            p.requires_grad_(n in trainable)
        model.tuneforge_adapter = {"adapter_size": size, "wrapped": wrapped}
        return model

    def fit(self, ctx: FitContext) -> FitResult:
        return no_own_loop(self.name)  # type: ignore[no-any-return]

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        keep = set(_trainable_names(model))
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k in keep}
        save_file(state, str(folder / WEIGHTS))
        (folder / CONFIG).write_text(json.dumps({"method": self.name, **model.tuneforge_adapter}, indent=2))
        model.config.save_pretrained(str(folder))  # labels and head shape, for the loader
        files = [WEIGHTS, CONFIG]
        return {"files": files, "saved_bytes": sum((folder / f).stat().st_size for f in files)}

    def load(self, run_dir: Path, manifest: dict[str, Any], base_path: Path | None, task: Any) -> Any:
        from safetensors.torch import load_file
        from transformers import AutoConfig

        from tuneforge.utils.hf import quiet_transformers

        if base_path is None:
            raise ConfigError(f"{run_dir} holds bottleneck adapters but its base model cannot be found")
        quiet_transformers()
        cfg = AutoConfig.from_pretrained(str(run_dir))
        model = auto_model_class(task).from_pretrained(
            str(base_path), config=cfg, use_safetensors=True, trust_remote_code=False, ignore_mismatched_sizes=True)
        info = json.loads((run_dir / CONFIG).read_text())
        insert_adapters(model, int(info["adapter_size"]))
        model.tuneforge_adapter = info
        state = load_file(str(run_dir / WEIGHTS))
        missing = set(state) - set(model.state_dict())
        if missing:
            raise ConfigError(f"{run_dir / WEIGHTS} holds weights this model does not have: {sorted(missing)[:3]}")
        model.load_state_dict(state, strict=False)
        model.eval()
        return model

    def merge(self, model: Any) -> Any:
        raise ConfigError("method: bottleneck adapters are non-linear and cannot be merged into the base weights",
                          hint="Serve the run folder as it is (it loads its base model), or train with "
                               "--method lora for a mergeable adapter.")
