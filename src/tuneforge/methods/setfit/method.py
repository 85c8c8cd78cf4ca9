"""SetFit through its public API (``SetFitModel``, ``Trainer``, ``TrainingArguments``), offline."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError
from tuneforge.methods.base import FitContext, FitResult
from tuneforge.methods.sentence import SentenceClassifier, SentenceMethod, label_texts, uses_normalize
from tuneforge.methods.setfit.config import SetFitOptions

__all__ = ["SetFitMethod", "select_pseudo_labels"]


def select_pseudo_labels(proba: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices and labels of the unlabelled rows predicted with probability >= ``threshold``, balanced: every class
    keeps at most as many rows as the rarest confident class (so the majority class does not swamp the head).
    Returns empty arrays when some class has no confident row."""
    pred = proba.argmax(1)
    conf = proba.max(1)
    per_class = [np.flatnonzero((pred == c) & (conf >= threshold)) for c in range(proba.shape[1])]
    k = min(len(ix) for ix in per_class)
    if k == 0:
        return np.array([], dtype=int), np.array([], dtype=int)
    chosen = [ix[np.argsort(-conf[ix])][:k] for ix in per_class]
    idx = np.concatenate(chosen)
    return idx, pred[idx]


class SetFitMethod(SentenceMethod):
    name = "setfit"
    summary = ("Few-shot classification (from ~8 examples per class): contrastive sentence-encoder fine-tuning "
               "+ logistic-regression head, label descriptions as extra examples, optional self-training.")
    options_class = SetFitOptions

    def fit(self, ctx: FitContext) -> FitResult:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # setfit must never reach for the hub
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments

        c = ctx.config
        o: SetFitOptions = self.options(c)
        if any(isinstance(ex.get("label"), list) for ex in ctx.train_examples):
            raise ConfigError("multi_label: setfit is single-label here")
        index = {lab: i for i, lab in enumerate(ctx.labels)}
        texts = [ex["text"] for ex in ctx.train_examples]
        y = [index[ex["label"]] for ex in ctx.train_examples]
        descriptions = label_texts(ctx.labels, o.label_template, o.label_descriptions)
        # label descriptions join the few examples (copies weigh them like a few real examples)
        texts_all = texts + descriptions * o.description_copies
        y_all = y + list(range(len(ctx.labels))) * o.description_copies

        model = SetFitModel.from_pretrained(str(ctx.base_path), labels=list(range(len(ctx.labels))),
                                            local_files_only=True)
        hp_batch = c.batch_size or 16
        # setfit turns max_steps back into a cap on the pairs it generates (max_steps x batch; -1: none)
        max_steps = -(-o.setfit_max_pairs // hp_batch) if o.setfit_max_pairs else -1
        with tempfile.TemporaryDirectory(prefix="tuneforge-setfit-") as tmp:
            args = TrainingArguments(output_dir=tmp, batch_size=hp_batch, num_iterations=o.setfit_iterations,
                                     num_epochs=1, max_steps=max_steps, body_learning_rate=c.learning_rate or 2e-5,
                                     seed=c.seed, report_to="none", save_strategy="no", eval_strategy="no",
                                     show_progress_bar=False, max_length=c.max_length or 256)
            ds = Dataset.from_dict({"text": texts_all, "label": y_all})
            ctx.console.print(f"SetFit: {len(texts)} examples + {len(descriptions)} label descriptions, "
                              f"{o.setfit_iterations} pair iterations"
                              + (f", at most {o.setfit_max_pairs} pairs" if o.setfit_max_pairs else ""))
            trainer = Trainer(model=model, args=args, train_dataset=ds,
                              metric=lambda pred, ref: {"accuracy": float(np.mean(np.asarray(pred) == ref))})
            trainer.train()
        info: dict[str, Any] = {"label_texts": descriptions, "description_copies": o.description_copies,
                                "pair_iterations": o.setfit_iterations, "max_pairs": o.setfit_max_pairs}
        if ctx.unlabeled_texts:
            proba = np.asarray(model.predict_proba(ctx.unlabeled_texts, as_numpy=True))
            idx, pseudo = select_pseudo_labels(proba, o.self_training_threshold)
            info["self_training"] = {"unlabeled": len(ctx.unlabeled_texts), "pseudo_labelled": int(len(idx)),
                                     "threshold": o.self_training_threshold}
            if len(idx):
                ctx.console.print(f"Self-training: {len(idx)} of {len(ctx.unlabeled_texts)} unlabelled texts "
                                  f"pseudo-labelled at confidence >= {o.self_training_threshold}; refitting the head")
                x = model.encode(texts_all + [ctx.unlabeled_texts[i] for i in idx], convert_to_numpy=True)
                model.model_head.fit(x, y_all + [int(v) for v in pseudo])
            else:
                ctx.console.print("Self-training skipped: some class has no unlabelled text above the threshold.")
        return FitResult(_to_module(model, len(ctx.labels), ctx.base_path), info=info,
                         steps=int(trainer.st_trainer.state.global_step))  # setfit trains through it


def _to_module(model: Any, n_labels: int, encoder_dir: Path) -> SentenceClassifier:
    """The trained SetFit body and logistic-regression head as one torch module with the same probabilities."""
    body = model.model_body
    encoder = body[0].auto_model
    module = SentenceClassifier(encoder, n_labels, normalize=uses_normalize(encoder_dir))
    head = model.model_head
    coef = np.asarray(head.coef_, dtype=np.float64)
    intercept = np.asarray(head.intercept_, dtype=np.float64)
    if coef.shape[0] == 1 and n_labels == 2:  # binary logistic regression: p(1) = sigmoid(w.x + b)
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    module.set_head(coef, intercept)
    module.eval()
    return module
