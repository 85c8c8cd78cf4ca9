"""Scoring the assistant's intents, retrieval and handovers on labelled messages
(``tuneforge solution assistant evaluate``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneforge.solutions.assistant.assistant import Assistant, IntentGuess
from tuneforge.solutions.assistant.config import AssistantConfig

__all__ = ["evaluate_assistant", "score_predictions"]


def evaluate_assistant(assistant: Assistant, rows: Sequence[dict[str, Any]], *, batch_size: int = 64
                       ) -> dict[str, Any]:
    """Score single messages (``text``, ``label``): intent accuracy on in-scope rows (label known to the
    assistant), hit-rate@1/@k (a retrieved passage of the message's intent), and handover precision / recall,
    where a message should be handed over when its intent is out of scope or a handover intent."""
    texts = [str(r["text"]) for r in rows]
    labels = [str(r["label"]) for r in rows]
    preds: list[IntentGuess] = []
    retrieved: list[list[str | None]] = []
    top: list[float] = []
    k = assistant.config.top_k
    for b in range(0, len(texts), batch_size):
        chunk = texts[b: b + batch_size]
        preds += assistant.classify(chunk)
        scores, idx = assistant.retrieve(chunk, k)
        retrieved += [[assistant.passages[int(r)].intent for r in rr] for rr in idx]
        top += [float(s[0]) if len(s) else -1.0 for s in scores]
    asks = [assistant._asks_for_human(t) for t in texts]
    return score_predictions([(p.intent, p.confidence, p.rejected) for p in preds], labels, retrieved,
                             known=assistant.labels, config=assistant.config, asks_for_human=asks, similarity=top)


def score_predictions(preds: Sequence[tuple[str | None, float] | tuple[str | None, float, bool]],
                      labels: Sequence[str],
                      retrieved: Sequence[Sequence[str | None]] | None, *, known: Sequence[str],
                      config: AssistantConfig, asks_for_human: Sequence[bool] | None = None,
                      similarity: Sequence[float] | None = None) -> dict[str, Any]:
    """The metrics of :func:`evaluate_assistant` from predictions (intent, confidence, and optionally whether the
    intent model's reject option rejected it) per message, the intents of the passages retrieved for it and the
    top similarity; a threshold sweep reuses the same predictions."""
    known_set = set(known)
    asks = asks_for_human or [False] * len(labels)
    sims = similarity if similarity is not None else [1.0] * len(labels)
    in_scope = [lab in known_set and lab not in config.handover_intents for lab in labels]
    correct = [p[0] == lab for p, lab in zip(preds, labels, strict=True)]
    handed = [p[1] < config.threshold or (p[0] in config.handover_intents) or a or sim < config.min_similarity
              or (len(p) > 2 and bool(p[2])) for p, a, sim in zip(preds, asks, sims, strict=True)]
    should = [not s for s in in_scope]
    ins = [i for i, s in enumerate(in_scope) if s]
    n_in = len(ins)
    tp = sum(h and s for h, s in zip(handed, should, strict=True))
    n_handed, n_should = sum(handed), sum(should)
    answered = [correct[i] for i in ins if not handed[i]]
    out: dict[str, Any] = {"messages": len(labels), "in_scope": n_in, "out_of_scope": n_should,
                           "intent_accuracy": _ratio(sum(correct[i] for i in ins), n_in)}
    if retrieved is not None:
        k = max((len(r) for r in retrieved), default=0)
        out["hit_rate@1"] = _ratio(sum(bool(retrieved[i]) and retrieved[i][0] == labels[i] for i in ins), n_in)
        out[f"hit_rate@{k}"] = _ratio(sum(labels[i] in retrieved[i] for i in ins), n_in)
    out.update({
        "threshold": config.threshold,
        "min_similarity": config.min_similarity,
        "handover_rate": _ratio(n_handed, len(labels)),
        "handover_precision": _ratio(tp, n_handed),
        "handover_recall": _ratio(tp, n_should),
        "in_scope_handover_rate": _ratio(sum(handed[i] for i in ins), n_in),
        "answered_accuracy": _ratio(sum(answered), len(answered)),
    })
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None
