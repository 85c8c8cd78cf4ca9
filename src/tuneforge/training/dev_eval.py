"""The dev evaluation of a run: metrics at every Trainer evaluation, the decoded predictions of each kept so the
final report needs no extra pass, and the report written into the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.evaluation.report import write_evaluation
from tuneforge.tasks.base import split_outputs
from tuneforge.training.setup import Prepared

__all__ = ["EvalStash", "best_step", "dev_predictions", "stash_callback", "write_dev_report"]


class EvalStash:
    """Keeps the decoded dev predictions of every evaluation, so the final report needs no extra pass."""

    def __init__(self, p: Prepared) -> None:
        self.p = p
        self.pending: list[dict[str, Any]] | None = None
        self.by_step: dict[int, list[dict[str, Any]]] = {}

    def compute_metrics(self, eval_pred: Any) -> dict[str, float]:
        p = self.p
        assert p.eval_enc is not None and p.eval_ds is not None
        if p.task.generative:  # token metrics from the logits; generating waits for the final report
            return {k: float(v) for k, v in p.task.token_metrics(eval_pred).items()}  # type: ignore[attr-defined]
        preds = eval_pred.predictions
        preds = preds if isinstance(preds, tuple) else (preds,)
        # Trainer evaluates in its own order (transformers 5 groups eval batches by length too), so rows are
        # matched back to features by their input ids; identical inputs have identical outputs.
        rows = _strip_padding(eval_pred.inputs, pad_id=p.tokenizer.pad_token_id)
        slots: dict[tuple[int, ...], list[int]] = {}
        for i, f in enumerate(p.eval_enc.features):
            slots.setdefault(tuple(f["input_ids"]), []).append(i)
        per_row = split_outputs(preds, [len(r) for r in rows], per_token=p.task.per_token)
        outputs: list[Any] = [None] * len(p.eval_enc.features)
        for ids, out in zip(rows, per_row, strict=True):
            outputs[slots[tuple(ids)].pop()] = out
        decoded = p.task.decode(outputs, p.eval_enc, p.eval_ds.examples, p.labels, multi_label=p.multi_label)
        self.pending = decoded
        scores = p.task.score(decoded, p.eval_ds.examples, p.labels, multi_label=p.multi_label)
        return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float)) and k != "n"}

    def on_evaluated(self, step: int) -> None:
        if self.pending is not None:
            self.by_step[step] = self.pending
            self.pending = None


def _strip_padding(inputs: np.ndarray, *, pad_id: int | None) -> list[list[int]]:
    """Input ids of each row without trailing padding (the collator's pad id, or -100 from Trainer's concat)."""
    pads = {-100} | ({pad_id} if pad_id is not None else set())
    rows = []
    for row in np.asarray(inputs):
        n = len(row)
        while n and int(row[n - 1]) in pads:
            n -= 1
        rows.append([int(x) for x in row[:n]])
    return rows


def stash_callback(stash: EvalStash) -> Any:
    from transformers import TrainerCallback

    class _Cb(TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            stash.on_evaluated(state.global_step)

    return _Cb()


def best_step(trainer: Any) -> int | None:
    """The step of the checkpoint the Trainer picked as best (None without evaluation)."""
    best = trainer.state.best_model_checkpoint
    if not best:
        return None
    try:
        return int(Path(best).name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None


def dev_predictions(p: Prepared, model: Any, *, batch_size: int, bf16: bool) -> list[dict[str, Any]]:
    """``model``'s decoded predictions on the dev features."""
    from tuneforge.tasks.encoder import forward_features

    assert p.eval_enc is not None and p.eval_ds is not None
    if p.task.generative:  # the task generates (and measures the reference replies' loss) itself
        return p.task.predict(model, p.tokenizer, p.eval_ds.examples, p.labels, max_length=p.hp["max_length"],
                              batch_size=batch_size, bf16=bf16)
    outputs = forward_features(model, p.eval_enc.features, p.task.collator(p.tokenizer), batch_size=batch_size,
                               bf16=bf16)
    return p.task.decode(outputs, p.eval_enc, p.eval_ds.examples, p.labels, multi_label=p.multi_label)


def _safe_name(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s) or "data"


def write_dev_report(p: Prepared, out: Path, preds: list[dict[str, Any]]) -> dict[str, Any]:
    """The dev report (metrics.json, report.md, plots) in ``out/eval-<dev file>``; returns its metrics."""
    assert p.eval_ds is not None
    return write_evaluation(out / ("eval-" + _safe_name(Path(p.eval_ds.path).stem)), p.task, preds, p.eval_ds,
                            p.labels, multi_label=p.multi_label, title=f"Dev evaluation of {out.name}")
