"""Preference pairs (DPO): features, batches, sequence log-probabilities, the DPO loss and preference scores.

A pair ``{"prompt", "chosen", "rejected"}`` is tokenized by :func:`.template.render_pair` (the one rendering path:
both answers after the same prompt, exactly as training renders any conversation; only the answer's tokens and
its end-of-turn token are learned). A pair feature holds the chosen conversation under the usual names
(``input_ids``, ``labels``: what Trainer's length grouping reads) and the rejected one under ``rejected_*``;
:class:`PairCollator` stacks the chosen rows and then the rejected rows of a batch into one padded batch, so one
forward pass scores both.

**Truncation** (pairs longer than ``max_length``): the prompt is cut from the left (its oldest tokens go first,
as TRL's ``keep_end``) but keeps at least half of ``max_length`` when it is that long, then an answer that still
does not fit is cut at the right. Both sides keep the same prompt tokens, so their rewards compare answers to one
prompt.

**Loss**: the sigmoid DPO loss (Rafailov et al. 2023; TRL's default), per pair
``-logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))`` where ``pi`` and ``ref`` are the summed log-probabilities
of the answer tokens under the model and under its reference (:mod:`tuneforge.models.reference`, set by the
tuning method with ``beta``). :class:`PreferenceLoss` computes it with TRL's metric names (``rewards/chosen``,
``rewards/rejected``, ``rewards/accuracies``, ``rewards/margins``, ``logps/chosen``, ``logps/rejected``), per pair
so that any batching averages them exactly; the reference log-probabilities are computed once before training
(:meth:`PreferenceLoss.with_reference_logps`, TRL's ``precompute_ref_log_probs``).

**Preference predictions** (``evaluate`` on a pair file): each pair's implicit reward of both answers, the
log-probability ratio to the reference times ``beta`` for a model that has a reference (a DPO run), else the plain
log-probability (a base model or a supervised run); :func:`score_pairs` reports ``preference_accuracy`` (the share
of pairs whose chosen answer gets the higher reward; ties count as wrong), the mean ``reward_margin``,
``reward_chosen``, ``reward_rejected``, ``n`` and, for a DPO run, ``valid_loss`` (the DPO loss on the pairs, what
training's evaluations report under the same name).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneforge.models.reference import Reference, reference_of
from tuneforge.tasks.generation.collate import PaddingCollator, pad_token_id
from tuneforge.tasks.generation.metrics import preference_accuracy
from tuneforge.tasks.generation.template import IGNORE_INDEX, Rendered, end_of_turn_ids, render_pair

__all__ = ["REWARD_METRICS", "PairCollator", "PairSet", "PreferenceLoss", "describe_pair", "dpo_loss", "encode_pairs",
           "is_pair", "pair_logps", "predict_pairs", "score_pairs", "sequence_logps", "truncate_pair"]

#: TRL's names of the metrics logged during DPO training (``eval_`` in front during evaluation)
REWARD_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                  "logps/rejected")
#: logits (rows x positions x vocabulary, float32) one scoring batch may hold: 2**28 floats are 1 GiB
_LOGIT_BUDGET = 1 << 28


def is_pair(example: dict[str, Any]) -> bool:
    """Whether ``example`` is a preference pair (``prompt``, ``chosen``, ``rejected``), not a conversation."""
    return "chosen" in example and "rejected" in example and "messages" not in example


# --- features -----------------------------------------------------------------------------------------------------


def _first_learned(r: Rendered) -> int:
    return next((j for j, y in enumerate(r.labels) if y != IGNORE_INDEX), len(r.labels))


def truncate_pair(chosen: Rendered, rejected: Rendered, max_length: int) -> tuple[Rendered, Rendered, bool]:
    """Both sides of a pair cut to ``max_length`` tokens (see the module's docstring); True when anything was cut."""
    if len(chosen.input_ids) <= max_length and len(rejected.input_ids) <= max_length:
        return chosen, rejected, False
    prompt_c, prompt_r = _first_learned(chosen), _first_learned(rejected)
    answer = max(len(chosen.input_ids) - prompt_c, len(rejected.input_ids) - prompt_r)
    keep_prompt = min(max(prompt_c, prompt_r), max(max_length - answer, max_length // 2))

    def cut(r: Rendered, prompt: int) -> Rendered:
        start = max(0, prompt - keep_prompt)
        end = start + max_length
        return Rendered(r.input_ids[start:end], r.labels[start:end], True)

    return cut(chosen, prompt_c), cut(rejected, prompt_r), True


@dataclass
class PairSet:
    """Pair features plus what the run reports: how many pairs were truncated, tokens before truncation."""

    features: list[dict[str, list[int]]]
    truncated: int = 0
    lengths: list[int] = field(default_factory=list)  # both sides' tokens before truncation, per pair


def encode_pairs(tokenizer: Any, examples: Sequence[dict[str, Any]], *, max_length: int | None = None) -> PairSet:
    """Pair features (``input_ids``/``labels`` of the chosen side, ``rejected_input_ids``/``rejected_labels``)."""
    eot = end_of_turn_ids(tokenizer)
    out = PairSet(features=[])
    for ex in examples:
        chosen, rejected = render_pair(tokenizer, ex, eot_ids=eot)
        out.lengths.append(len(chosen.input_ids) + len(rejected.input_ids))
        if max_length is not None:
            chosen, rejected, cut = truncate_pair(chosen, rejected, max_length)
            out.truncated += int(cut)
        out.features.append({"input_ids": chosen.input_ids, "labels": chosen.labels,
                             "rejected_input_ids": rejected.input_ids, "rejected_labels": rejected.labels})
    return out


class PairCollator:
    """One padded batch of a batch of pairs: the chosen rows, then the rejected rows (``input_ids``,
    ``attention_mask``, ``labels`` of 2 x pairs rows), plus the pairs' precomputed reference log-probabilities
    (``ref_chosen_logps``, ``ref_rejected_logps``) when the features hold them."""

    def __init__(self, pad_id: int) -> None:
        self._pad = PaddingCollator(pad_id)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = ([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features]
                + [{"input_ids": f["rejected_input_ids"], "labels": f["rejected_labels"]} for f in features])
        batch = self._pad(rows)
        if all("ref_chosen_logps" in f for f in features):
            batch["ref_chosen_logps"] = torch.tensor([float(f["ref_chosen_logps"]) for f in features])
            batch["ref_rejected_logps"] = torch.tensor([float(f["ref_rejected_logps"]) for f in features])
        return batch


# --- log-probabilities --------------------------------------------------------------------------------------------


def _accepts_logits_to_keep(model: Any) -> bool:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model passes it on
    try:
        return "logits_to_keep" in inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False


def sequence_logps(model: Any, input_ids: Any, attention_mask: Any, labels: Any) -> Any:
    """Summed log-probability of each row's learned tokens (labels != -100) under ``model``, with gradients.

    Only the positions that predict a learned token are projected onto the vocabulary (transformers'
    ``logits_to_keep`` with a boolean mask, where the model takes it): the prompt's logits, the bulk of a long
    conversation's vocabulary-sized output, are never built.
    """
    import torch

    target = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = target != IGNORE_INDEX
    rows = keep.nonzero(as_tuple=True)[0]
    common = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if not len(rows):  # nothing learned: zeros that still reach the trainable weights' graph
        logits = model(**common, logits_to_keep=1).logits if _accepts_logits_to_keep(model) else model(**common).logits
        return torch.zeros(labels.shape[0], device=logits.device) + logits.sum() * 0.0
    if _accepts_logits_to_keep(model):
        logits = model(**common, logits_to_keep=keep).logits  # [learned tokens, vocabulary]
    else:
        logits = model(**common).logits[keep]
    logits = logits.float()
    wanted = target[keep[:, :-1]].to(logits.device)
    token_logps = logits.gather(-1, wanted.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return torch.zeros(labels.shape[0], device=logits.device, dtype=token_logps.dtype).index_add(
        0, rows.to(logits.device), token_logps)


def pair_logps(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """The chosen and the rejected answers' log-probabilities of a :class:`PairCollator` batch."""
    logps = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    n = logps.shape[0] // 2
    return logps[:n], logps[n:]


def _module_on(module: Any, device: Any) -> Any:
    first = next(module.parameters(), None)
    if first is not None and first.device != device:
        module.to(device)
    return module


def _reference_logps(reference: Reference, batch: dict[str, Any], device: Any) -> tuple[Any, Any]:
    import torch

    with torch.no_grad(), reference.enter() as ref_model:
        return pair_logps(_module_on(ref_model, device), batch)


def dpo_loss(chosen: Any, rejected: Any, ref_chosen: Any, ref_rejected: Any, beta: float) -> tuple[Any, Any, Any]:
    """The sigmoid DPO loss per pair and the implicit rewards ``beta * log-ratio`` of both answers (detached)."""
    import torch.nn.functional as F

    chosen_ratio = chosen - ref_chosen.to(chosen.device)
    rejected_ratio = rejected - ref_rejected.to(rejected.device)
    losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def _pair_batches(features: Sequence[dict[str, Any]], batch_size: int, vocab: int) -> Iterator[list[int]]:
    """Indices of pair batches, longest pairs first, at most ``batch_size`` pairs and about a GiB of logits each."""
    def width(i: int) -> int:
        return max(len(features[i]["input_ids"]), len(features[i]["rejected_input_ids"]))

    batch: list[int] = []
    for i in sorted(range(len(features)), key=lambda i: -width(i)):
        # the first pair of a batch is its widest: the batch is padded to it
        if batch and (len(batch) >= batch_size or 2 * (len(batch) + 1) * width(batch[0]) * vocab > _LOGIT_BUDGET):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _vocab(model: Any) -> int:
    config = getattr(model, "config", None)
    return int(getattr(config, "vocab_size", 0) or 32_000)


def _score_features(model: Any, features: Sequence[dict[str, Any]], pad_id: int, *, batch_size: int, bf16: bool,
                    reference: Reference | None,
                    on_batch: Callable[[int], None] | None = None) -> tuple[list[tuple[float, float]],
                                                                            list[tuple[float, float]] | None]:
    """``(chosen, rejected)`` log-probabilities of every pair under ``model`` and (given) its reference."""
    import torch

    from tuneforge.tasks.encoder import model_dtype_context

    model.eval()
    device = next(model.parameters()).device
    collate = PairCollator(pad_id)
    policy: list[tuple[float, float]] = [(0.0, 0.0)] * len(features)
    ref: list[tuple[float, float]] | None = [(0.0, 0.0)] * len(features) if reference is not None else None
    with torch.inference_mode(), model_dtype_context(bf16):
        for idx in _pair_batches(features, batch_size, _vocab(model)):
            batch = {k: v.to(device) for k, v in collate([features[i] for i in idx]).items()}
            c, r = pair_logps(model, batch)
            for j, i in enumerate(idx):
                policy[i] = (float(c[j]), float(r[j]))
            if reference is not None and ref is not None:
                with reference.enter() as ref_model:
                    rc, rr = pair_logps(_module_on(ref_model, device), batch)
                for j, i in enumerate(idx):
                    ref[i] = (float(rc[j]), float(rr[j]))
            if on_batch:
                on_batch(len(idx))
    return policy, ref


# --- training: the loss the Trainer minimizes ---------------------------------------------------------------------


class PreferenceLoss:
    """DPO's sigmoid loss for :class:`~tuneforge.training.trainer.TuneforgeTrainer`: ``loss(model, batch)`` gives the
    mean loss of a :class:`PairCollator` batch and the per-pair metrics under TRL's names (plus ``loss``).

    ``beta`` and how to run the reference come from the model's :class:`~tuneforge.models.reference.Reference`
    (the tuning method sets it); a batch without precomputed reference log-probabilities runs the reference too.
    """

    def __init__(self, model: Any, tokenizer: Any) -> None:
        reference = reference_of(model)
        if reference is None:
            raise ValueError("the model has no reference model (the preference method sets one in prepare)")
        self.reference = reference
        self.beta = reference.beta
        self.pad_id = pad_token_id(tokenizer)
        self.collator = PairCollator(self.pad_id)

    def __call__(self, model: Any, inputs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        chosen, rejected = pair_logps(model, inputs)
        if "ref_chosen_logps" in inputs:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = _reference_logps(self.reference, inputs, chosen.device)
        losses, reward_c, reward_r = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.beta)
        metrics = {"loss": losses.detach(), "rewards/chosen": reward_c, "rewards/rejected": reward_r,
                   "rewards/accuracies": (reward_c > reward_r).float(), "rewards/margins": reward_c - reward_r,
                   "logps/chosen": chosen.detach(), "logps/rejected": rejected.detach()}
        return losses.mean(), metrics

    def with_reference_logps(self, model: Any, features: Sequence[dict[str, Any]], *, batch_size: int,
                             bf16: bool) -> list[dict[str, Any]]:
        """``features`` with each pair's reference log-probabilities (``ref_chosen_logps``,
        ``ref_rejected_logps``), computed once in eval mode (TRL's ``precompute_ref_log_probs``)."""
        import torch

        was_training = model.training
        if torch.cuda.is_available():
            model.to("cuda")
        _, ref = _score_features(model, features, self.pad_id, batch_size=batch_size, bf16=bf16,
                                 reference=self.reference)
        model.train(was_training)
        assert ref is not None
        return [{**f, "ref_chosen_logps": c, "ref_rejected_logps": r} for f, (c, r) in zip(features, ref, strict=True)]


# --- evaluation: implicit rewards of both answers -----------------------------------------------------------------


def predict_pairs(model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], *, max_length: int,
                  batch_size: int = 8, bf16: bool = False,
                  on_batch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Each pair's log-probabilities and implicit rewards (see the module's docstring): ``chosen_logp``,
    ``rejected_logp`` (and ``ref_chosen_logp``, ``ref_rejected_logp``, ``loss`` for a model with a reference),
    ``chosen_reward``, ``rejected_reward``, ``margin`` and ``preferred`` (whether the chosen answer won)."""
    features = encode_pairs(tokenizer, examples, max_length=max_length).features
    reference = reference_of(model)
    policy, ref = _score_features(model, features, pad_token_id(tokenizer), batch_size=batch_size, bf16=bf16,
                                  reference=reference, on_batch=on_batch)
    preds = []
    for i, (c, r) in enumerate(policy):
        p: dict[str, Any] = {"chosen_logp": c, "rejected_logp": r}
        if reference is not None and ref is not None:
            rc, rr = ref[i]
            reward_c, reward_r = reference.beta * (c - rc), reference.beta * (r - rr)
            p.update(ref_chosen_logp=rc, ref_rejected_logp=rr,
                     loss=float(-_logsigmoid(reward_c - reward_r)))
        else:
            reward_c, reward_r = c, r
        margin = reward_c - reward_r
        p.update(chosen_reward=reward_c, rejected_reward=reward_r, margin=margin, preferred=margin > 0,
                 score=abs(margin))
        preds.append(p)
    return preds


def _logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def score_pairs(predictions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``preference_accuracy``, ``reward_margin``, ``reward_chosen``, ``reward_rejected``, ``n`` and (DPO runs)
    ``valid_loss`` of :func:`predict_pairs`' predictions."""
    n = len(predictions)
    if not n:
        return {"preference_accuracy": float("nan"), "n": 0}

    def mean(key: str) -> float:
        return sum(float(p[key]) for p in predictions) / n

    metrics: dict[str, Any] = {
        "preference_accuracy": preference_accuracy([p["chosen_reward"] for p in predictions],
                                                   [p["rejected_reward"] for p in predictions]),
        "reward_margin": mean("margin"), "reward_chosen": mean("chosen_reward"),
        "reward_rejected": mean("rejected_reward")}
    if all("loss" in p for p in predictions):
        metrics["valid_loss"] = mean("loss")
    metrics["n"] = n
    return metrics


def describe_pair(prediction: dict[str, Any], example: dict[str, Any]) -> tuple[bool, str]:
    """Whether the model ranked the pair wrong, and a line for the report's error list."""
    asked = next((m["content"] for m in reversed(example["prompt"]) if m.get("role") == "user"), "")
    chosen = " ".join(m["content"] for m in example["chosen"])
    rejected = " ".join(m["content"] for m in example["rejected"])
    return (not prediction["preferred"],
            f"prompt {asked[:160]!r}: preferred {chosen[:160]!r} (reward {prediction['chosen_reward']:.3f}) ranked "
            f"below {rejected[:160]!r} (reward {prediction['rejected_reward']:.3f})")
