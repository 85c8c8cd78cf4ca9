"""Warm-start the classification head before fine-tuning (LP-FT: Kumar et al., 2022, "Fine-Tuning can Distort
Pretrained Features and Underperform Out-of-Distribution").

A randomly initialised head sends noisy gradients into the pretrained encoder during the first steps; on small
data that is often all the steps there are. Fitting the head (pooler + classifier) on frozen encoder features
first costs one inference pass over (a sample of) the training data and a fraction of a second of optimisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["warm_start_classifier"]

MAX_EXAMPLES = 2000


def _head_modules(model: Any) -> tuple[Any, Any, Any] | None:
    base = getattr(model, model.base_model_prefix, None)
    pooler = getattr(base, "pooler", None)
    classifier = getattr(model, "classifier", None)
    if base is None or classifier is None or not isinstance(classifier, torch.nn.Linear):
        return None
    return base, pooler, classifier


@torch.no_grad()
def _cls_states(base: Any, features: list[dict[str, Any]], collator: Any, batch_size: int = 64) -> torch.Tensor:
    keys = ("input_ids", "attention_mask", "token_type_ids")
    states = []
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    for b in range(0, len(order), batch_size):
        batch = collator([{k: features[i][k] for k in keys if k in features[i]} for i in order[b: b + batch_size]])
        out = base(**{k: v for k, v in batch.items() if k in keys})
        states.append(out.last_hidden_state[:, 0].float())
    h = torch.cat(states)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.as_tensor(order)] = torch.arange(len(order))
    return h[inverse]


def warm_start_classifier(model: Any, features: list[dict[str, Any]], collator: Any, *, multi_label: bool,
                          seed: int, steps: int = 300, lr: float = 1e-2) -> float | None:
    """Fit pooler and classifier on frozen [CLS] states; returns the final probe loss (None if not applicable)."""
    parts = _head_modules(model)
    if parts is None or not features or "labels" not in features[0]:
        return None
    base, pooler, classifier = parts
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(features), size=min(MAX_EXAMPLES, len(features)), replace=False)
    sample = [features[i] for i in idx]
    was_training = model.training
    model.eval()
    h = _cls_states(base, sample, collator)
    y = torch.tensor([f["labels"] for f in sample], dtype=torch.float if multi_label else torch.long)
    params = list(classifier.parameters()) + (list(pooler.parameters()) if pooler is not None else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss() if multi_label else torch.nn.CrossEntropyLoss()
    loss = torch.tensor(0.0)
    with torch.enable_grad():
        for _ in range(steps):
            pooled = pooler.activation(pooler.dense(h)) if pooler is not None else h
            loss = loss_fn(classifier(pooled), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.train(was_training)
    return float(loss)
