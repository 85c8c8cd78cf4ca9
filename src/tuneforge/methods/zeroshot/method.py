"""Zero-shot: a SentenceClassifier whose head rows are the label texts' embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np

from tuneforge.methods.base import FitContext, FitResult
from tuneforge.methods.sentence import SentenceClassifier, SentenceMethod, label_texts, uses_normalize
from tuneforge.methods.zeroshot.config import ZeroShotOptions

__all__ = ["ZeroShot"]

#: cosine similarities (in [-1, 1]) times this give the logits: a softmax temperature of 0.05
SCALE = 20.0


class ZeroShot(SentenceMethod):
    name = "zeroshot"
    summary = ("No training: the label whose description or template is closest to the text in the sentence "
               "encoder's space. A starting point before any labels exist.")
    options_class = ZeroShotOptions

    def fit(self, ctx: FitContext) -> FitResult:
        from transformers import AutoModel

        from tuneforge.utils.hf import quiet_transformers

        quiet_transformers()
        encoder = AutoModel.from_pretrained(str(ctx.base_path), use_safetensors=True, trust_remote_code=False)
        module = SentenceClassifier(encoder, len(ctx.labels), normalize=uses_normalize(ctx.base_path))
        o: ZeroShotOptions = self.options(ctx.config)
        texts = label_texts(ctx.labels, o.label_template, o.label_descriptions)
        vecs = embed_texts(module, ctx.tokenizer, texts)
        vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        module.set_head(vecs * SCALE, np.zeros(len(texts)))
        module.eval().requires_grad_(False)  # nothing is trained: the run reports 0 trainable parameters
        return FitResult(module, info={"label_texts": texts, "scale": SCALE})


def embed_texts(module: SentenceClassifier, tokenizer: Any, texts: list[str]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        return module.embed(**{k: v for k, v in enc.items()}).float().numpy()
