"""Zero-shot: a SentenceClassifier whose head rows are the label texts' embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.methods.base import FitContext, FitResult, MethodDefaults
from tuneforge.methods.sentence import (
    SentenceClassifier,
    choose_encoder,
    label_texts,
    load_sentence_classifier,
    uses_normalize,
)

__all__ = ["ZeroShot"]

#: cosine similarities (in [-1, 1]) times this give the logits: a softmax temperature of 0.05
SCALE = 20.0


class ZeroShot(MethodDefaults):
    name = "zeroshot"
    summary = ("No training: the label whose description or template is closest to the text in the sentence "
               "encoder's space. A starting point before any labels exist.")
    tasks = frozenset({"classification"})
    own_loop = True
    mergeable = True
    reload_best = True
    lr_scale = 1.0

    def check(self, config: Any) -> list[str]:
        return ["multi_label: zeroshot is single-label"] if config.multi_label else []

    def base_model(self, config: Any, requested: Any, settings: Any) -> tuple[Any, str | None]:
        return choose_encoder(config, requested, settings)

    def prepare(self, model: Any, config: Any, task: Any, *, total_steps: int = 100) -> Any:
        raise NotImplementedError("zeroshot does not train")

    def fit(self, ctx: FitContext) -> FitResult:
        from transformers import AutoModel

        from tuneforge.utils.hf import quiet_transformers

        quiet_transformers()
        encoder = AutoModel.from_pretrained(str(ctx.base_path), use_safetensors=True, trust_remote_code=False)
        module = SentenceClassifier(encoder, len(ctx.labels), normalize=uses_normalize(ctx.base_path))
        texts = label_texts(ctx.labels, ctx.config.label_template, ctx.config.label_descriptions)
        vecs = embed_texts(module, ctx.tokenizer, texts)
        vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        module.set_head(vecs * SCALE, np.zeros(len(texts)))
        module.eval().requires_grad_(False)  # nothing is trained: the run reports 0 trainable parameters
        return FitResult(module, info={"label_texts": texts, "scale": SCALE})

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        files = model.save(folder)
        return {"files": files, "saved_bytes": sum((folder / f).stat().st_size for f in files)}

    def load(self, run_dir: Path, manifest: dict[str, Any], base_path: Path | None) -> Any:
        return load_sentence_classifier(run_dir)



def embed_texts(module: SentenceClassifier, tokenizer: Any, texts: list[str]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        return module.embed(**{k: v for k, v in enc.items()}).float().numpy()
