"""Why a model predicted what it did: token attributions by integrated gradients (Captum).

An explanation attributes one output of a loaded run (:func:`tuneforge.inference.load_predictor`, so what is
explained is what is served) to the words of the input, with Captum's ``LayerIntegratedGradients`` on the model's
input-embedding layer: the gradient of the output is integrated along the straight line from a baseline (every
text token replaced by the padding token, the special tokens kept) to the input, in embedding space. The scores
of a word's sub-word pieces are summed (the fast tokenizer's ``word_ids`` and offsets say which pieces make which
word); Chinese text is attributed character by character, as :func:`tuneforge.tasks.common.split_words` splits it.

- Classification (a sequence-level task): the logit of the predicted label, or of a requested one. A run with a
  reject option explains the best known label of a rejected input (the out-of-scope label is a threshold, not an
  output of the model). ``score`` is the label's served probability (at the run's calibrated temperature).
- NER (a per-token task): one explanation per predicted entity, of the mean logit of its predicted tags over its
  words; ``score`` is the entity's served score.

Integrated gradients is *complete*: the scores sum to the output at the input minus the output at the baseline, up
to the error of the integral's approximation, which Captum reports as the convergence delta (more ``steps``, a
smaller delta). Each explanation costs about ``steps`` forward and backward passes.

:func:`comprehensiveness` measures faithfulness (DeYoung et al. 2020, ERASER): how much the explained label's
probability drops when the top-k attributed words are deleted, next to deleting k random words.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError, RunError
from tuneforge.tasks.common import is_cjk, softmax, split_words
from tuneforge.tasks.encoder import clip_texts

__all__ = ["DEFAULT_STEPS", "MAX_STEPS", "Explainer", "Explanation", "WordScore", "comprehensiveness",
           "delete_words", "explain"]

#: integration steps (Gauss-Legendre points) of one explanation
DEFAULT_STEPS = 50
MAX_STEPS = 1000
#: interpolated inputs per forward pass times their tokens: bounds the memory of one explanation
_TOKENS_PER_PASS = 8192


@dataclass(frozen=True)
class WordScore:
    """One word's attribution: its text, its share of the explained output, its character span in the input
    (``segment`` 1: in the second text of a sentence pair)."""

    token: str
    score: float
    start: int
    end: int
    segment: int = 0

    def to_json(self, *, spans: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"token": self.token, "score": round(self.score, 6)}
        if spans:
            out.update(start=self.start, end=self.end)
            if self.segment:
                out["segment"] = self.segment
        return out


@dataclass(frozen=True)
class Explanation:
    """The attributions of one explained output: a label of a classifier, or an entity of a NER model."""

    label: str
    #: the served probability of ``label`` (classification) or the entity's score (NER)
    score: float
    attributions: list[WordScore]
    #: sum of the attributions minus (output at the input - output at the baseline): the integral's error
    convergence_delta: float
    #: the explained output (a logit, or an entity's mean logit) at the input and at the baseline
    output: float
    baseline_output: float
    #: NER: the entity explained (``text``, ``start``, ``end``); None for a classification
    entity: dict[str, Any] | None = None
    steps: int = DEFAULT_STEPS

    def to_json(self, *, spans: bool = True) -> dict[str, Any]:
        """``{"label", "score", "attributions": [{"token", "score"}, ...], "convergence_delta"}`` (with each
        word's character span when ``spans``; an entity's ``text``, ``start``, ``end`` for NER)."""
        out: dict[str, Any] = {"label": self.label, "score": round(self.score, 6)}
        if self.entity is not None:
            out.update(self.entity)
        out["attributions"] = [w.to_json(spans=spans) for w in self.attributions]
        out["convergence_delta"] = round(self.convergence_delta, 6)
        return out


def explain(predictor: Any, inputs: Sequence[str | dict[str, Any]], *, label: str | None = None,
            steps: int = DEFAULT_STEPS) -> list[Any]:
    """Explanations of ``predictor``'s predictions for raw ``inputs`` (as ``predict`` takes them): per input, an
    :class:`Explanation` for a classifier, a list of them (one per entity) for a NER model. ``label``: the label
    (NER: the entity type) to explain instead of the predicted one."""
    return Explainer(predictor).explain(inputs, label=label, steps=steps)


class Explainer:
    """Explains one loaded predictor; also a model-cache entry (``nbytes``, ``close``) so that the service keeps
    one beside the copy it serves (the attribution hooks the embedding layer, which a concurrent forward pass of
    the served copy must not run through). Explanations of one explainer run one at a time."""

    def __init__(self, predictor: Any) -> None:
        task = predictor.task
        model = getattr(predictor, "model", None)
        # a sequence-level task (classification) or a labelled per-token one (NER); QA and generation are neither
        if not (getattr(task, "sequence_level", False) or (getattr(task, "per_token", False)
                                                           and getattr(task, "labelled", True)
                                                           and not getattr(task, "generative", False))):
            raise ConfigError(f"explanations are for classification and NER models, not a {task.name} model",
                              hint="explain a classification or NER run")
        if model is None or not callable(getattr(model, "get_input_embeddings", None)):
            raise ConfigError(f"this run ({predictor.manifest.get('method', 'ensemble')}) is not one transformers "
                              "model with an embedding layer, which integrated gradients needs",
                              hint="explain one of the runs it is made of")
        tokenizer = predictor.tokenizer
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError("explanations need a fast tokenizer (word offsets), which this run's folder does not "
                              "have", hint="train the run again with a base model that has tokenizer.json")
        self.predictor = predictor
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        from tuneforge.models.tensors import model_nbytes

        return int(model_nbytes(self.predictor.model))

    def close(self) -> None:
        pass

    def explain(self, inputs: Sequence[str | dict[str, Any]], *, label: str | None = None,
                steps: int = DEFAULT_STEPS) -> list[Any]:
        """See :func:`explain`."""
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
            raise ConfigError(f"steps: an integer from 1 to {MAX_STEPS}, not {steps!r}",
                              hint=f"the default, {DEFAULT_STEPS}, gives a convergence delta well under 0.1")
        p = self.predictor
        self._check_label(label)
        examples = p.to_examples(inputs)
        preds = p.predict_examples(examples)
        with self._lock:
            if p.task.sequence_level:
                return [self._classification(ex, pred, label, steps) for ex, pred in zip(examples, preds,
                                                                                          strict=True)]
            return [self._entities(ex, pred, label, steps) for ex, pred in zip(examples, preds, strict=True)]

    # --- classification -----------------------------------------------------------------------------------

    def _check_label(self, label: str | None) -> None:
        if label is None:
            return
        p = self.predictor
        known = p.labels if p.task.sequence_level else sorted({x[2:] for x in p.labels if x != "O"})
        if label not in known:
            noun = "label" if p.task.sequence_level else "entity type"
            raise ConfigError(f"label: {label!r} is not a {noun} of this model (it has: {', '.join(known)})",
                              hint=f"pass one of the model's {noun}s, or leave the label out to explain the "
                                   "prediction")

    def _classification(self, example: dict[str, Any], pred: dict[str, Any], label: str | None,
                        steps: int) -> Explanation:
        p = self.predictor
        labels = p.labels
        if label is None:
            label = _predicted_label(pred, labels)
        target = labels.index(label)
        text, pair = example["text"], example.get("text_pair")
        inputs = self._classification_inputs(example)
        tok = p.tokenizer
        max_length = int(p.manifest["max_length"])
        texts = clip_texts([text], tok, max_length)
        if pair is not None:
            pairs = clip_texts([pair], tok, max_length)
            enc = tok(texts[0], pairs[0], truncation="longest_first", max_length=max_length,
                      return_offsets_mapping=True)
        else:
            enc = tok(texts[0], truncation=True, max_length=max_length, return_offsets_mapping=True)
        if list(enc["input_ids"]) != list(inputs["input_ids"]):
            raise RunError("the tokenizer gives other tokens than the run's encoding",
                           hint="report this with the input text")
        word_ids, offsets = enc.word_ids(0), enc["offset_mapping"]
        seq_ids = enc.sequence_ids(0)

        def forward(input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            return _logits(p.model, input_ids, attention_mask, token_type_ids)

        special = [w is None for w in word_ids]
        scores, delta, out, base_out = self._integrate(forward, inputs, special, target, steps)
        logits = out[0]
        probs = _probabilities(p.task, logits[None, :], p.multi_label)[0]
        words = _word_scores([text, pair or ""], scores, word_ids, seq_ids, offsets)
        return Explanation(label=label, score=float(probs[target]), attributions=words, convergence_delta=delta,
                           output=float(logits[target]), baseline_output=float(base_out[0][target]), steps=steps)

    def _classification_inputs(self, example: dict[str, Any]) -> dict[str, list[int]]:
        p = self.predictor
        enc = p.task.encode([example], p.tokenizer, p.labels, max_length=int(p.manifest["max_length"]),
                            with_labels=False, multi_label=p.multi_label)
        return {k: list(v) for k, v in enc.features[0].items()}

    # --- NER ----------------------------------------------------------------------------------------------

    def _entities(self, example: dict[str, Any], pred: dict[str, Any], label: str | None,
                  steps: int) -> list[Explanation]:
        import torch

        from tuneforge.tasks.ner.task import kept_positions

        p = self.predictor
        entities = [e for e in pred.get("entities", []) if label is None or e["type"] == label]
        if not entities:
            return []
        max_length = int(p.manifest["max_length"])
        enc = p.task.encode([example], p.tokenizer, p.labels, max_length=max_length, with_labels=False)
        inputs = {k: list(v) for k, v in enc.features[0].items()}
        first = list(enc.meta[0]["first"])
        words = list(example["tokens"])
        raw = p.tokenizer([words], is_split_into_words=True, truncation=False)
        all_ids, all_tokens = raw.word_ids(0), raw.tokens(0)
        keep = kept_positions(all_ids, all_tokens, words, max_length)
        if [raw["input_ids"][0][k] for k in keep] != inputs["input_ids"]:
            raise RunError("the tokenizer gives other tokens than the run's encoding",
                           hint="report this with the input text")
        word_ids = [all_ids[k] for k in keep]
        spans = list(example.get("spans") or [])
        text = str(example.get("source_text") or " ".join(words))
        special = [w is None for w in word_ids]
        index = {lab: i for i, lab in enumerate(p.labels)}
        out: list[Explanation] = []
        for ent in entities:
            a, b = ent["words"]
            pos = [first[w] for w in range(a, b) if w < len(first) and first[w] >= 0]
            tags = [index[pred["tags"][w]] for w in range(a, b) if w < len(first) and first[w] >= 0]
            if not pos:
                continue
            pos_t, tag_t = torch.tensor(pos), torch.tensor(tags)

            def forward(input_ids: Any, attention_mask: Any, token_type_ids: Any = None,
                        _pos: Any = pos_t, _tag: Any = tag_t) -> Any:
                logits = _logits(p.model, input_ids, attention_mask, token_type_ids)
                return logits[:, _pos, _tag].mean(-1)

            scores, delta, value, base_value = self._integrate(forward, inputs, special, None, steps)
            per_word = np.zeros(len(words))
            for s, w in zip(scores, word_ids, strict=True):
                if w is not None:
                    per_word[w] += s
            attributions = [WordScore(token=text[spans[w][0]:spans[w][1]] if spans else words[w],
                                      score=float(per_word[w]), start=spans[w][0] if spans else -1,
                                      end=spans[w][1] if spans else -1)
                            for w in sorted({w for w in word_ids if w is not None})]
            out.append(Explanation(label=ent["type"], score=float(ent["score"]), attributions=attributions,
                                   convergence_delta=delta, output=float(value[0]),
                                   baseline_output=float(base_value[0]), steps=steps,
                                   entity={"text": ent["text"], "start": ent["start"], "end": ent["end"]}))
        return out

    # --- integrated gradients -----------------------------------------------------------------------------

    def _integrate(self, forward: Any, inputs: dict[str, list[int]], special: list[bool], target: int | None,
                   steps: int) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        """Per-token attributions (summed over the embedding dimension) of ``forward``'s output ``target``, the
        convergence delta, and the output at the input and at the baseline."""
        import torch
        from captum.attr import LayerIntegratedGradients

        p = self.predictor
        model = p.model
        device = next(model.parameters()).device
        ids = torch.tensor([inputs["input_ids"]], device=device)
        mask = torch.tensor([inputs.get("attention_mask", [1] * ids.shape[1])], device=device)
        types = (torch.tensor([inputs["token_type_ids"]], device=device) if "token_type_ids" in inputs else None)
        base_id = _baseline_id(p.tokenizer)
        baseline = torch.where(torch.tensor([special], device=device), ids, torch.full_like(ids, base_id))
        lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
        per_pass = max(1, min(steps, _TOKENS_PER_PASS // max(1, ids.shape[1])))
        with torch.enable_grad():
            attrs, delta = lig.attribute(ids, baselines=baseline, additional_forward_args=(mask, types),
                                         target=target, n_steps=steps, internal_batch_size=per_pass,
                                         return_convergence_delta=True)
        with torch.inference_mode():
            out = forward(ids, mask, types)
            base_out = forward(baseline, mask, types)
        scores = attrs.sum(dim=-1)[0].detach().float().cpu().numpy().astype(np.float64)
        return (scores, float(delta.reshape(-1)[0]), out.detach().float().cpu().numpy(),
                base_out.detach().float().cpu().numpy())


def _logits(model: Any, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = token_type_ids
    out = model(**kwargs)
    logits = getattr(out, "logits", None)
    if logits is None:
        raise ConfigError("this run's model gives no logits to explain", hint="explain a classification or NER run")
    return logits.float()


def _baseline_id(tokenizer: Any) -> int:
    for name in ("pad_token_id", "unk_token_id", "mask_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def _predicted_label(pred: dict[str, Any], labels: list[str]) -> str:
    """The label a prediction stands for: the best known label of a rejected input, the most probable chosen
    label of a multi-label one (the most probable label when none is chosen)."""
    if pred.get("rejected") and pred.get("best_label") in labels:
        return str(pred["best_label"])
    if "labels" in pred:
        chosen = [lab for lab in pred["labels"] if lab in labels] or list(labels)
        scores = pred.get("scores") or {}
        return max(chosen, key=lambda lab: scores.get(lab, 0.0))
    if pred.get("label") in labels:
        return str(pred["label"])
    ood = pred.get("ood") or {}
    if ood.get("best_label") in labels:
        return str(ood["best_label"])
    return max(labels, key=lambda lab: (pred.get("scores") or {}).get(lab, 0.0))


def _probabilities(task: Any, logits: np.ndarray, multi_label: bool) -> np.ndarray:
    probabilities = getattr(task, "probabilities", None)
    if probabilities is not None:
        return np.asarray(probabilities(logits.astype(np.float64), multi_label=multi_label))
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return softmax(logits, axis=-1)


def _word_scores(texts: Sequence[str], scores: np.ndarray, word_ids: Sequence[int | None],
                 seq_ids: Sequence[int | None], offsets: Sequence[tuple[int, int]]) -> list[WordScore]:
    """Token scores summed into words: the tokenizer's words (its pieces by ``word_ids``), each split further into
    characters where it holds Chinese (a SentencePiece tokenizer makes one "word" of a whole unspaced sentence).
    A piece covering several characters shares its score among them by the characters it covers; a piece that
    covers none (a bare word-start marker) gives it to its word's first unit. The sum is kept."""
    # the units: (segment, word id) -> [(start, end)], in order
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (w, s) in enumerate(zip(word_ids, seq_ids, strict=True)):
        if w is not None:
            groups.setdefault((int(s or 0), int(w)), []).append(i)
    units: list[tuple[int, int, int]] = []  # segment, start, end
    unit_of_piece: dict[int, list[tuple[int, float]]] = {}
    for (seg, _w), pieces in groups.items():
        spans = [offsets[i] for i in pieces if offsets[i][1] > offsets[i][0]]
        if not spans:
            continue
        start, end = min(s for s, _ in spans), max(e for _, e in spans)
        text = texts[seg] if seg < len(texts) else ""
        first = len(units)
        word = text[start:end]
        if any(is_cjk(c) for c in word):
            units.extend((seg, start + a, start + b) for _, a, b in split_words(word))
        else:
            units.append((seg, start, end))
        mine = range(first, len(units))
        for i in pieces:
            s, e = offsets[i]
            cover = [(u, float(n)) for u in mine if (n := min(e, units[u][2]) - max(s, units[u][1])) > 0]
            total = sum(n for _, n in cover)
            unit_of_piece[i] = [(u, n / total) for u, n in cover] if total else [(first, 1.0)]
    values = np.zeros(len(units))
    for i, shares in unit_of_piece.items():
        for u, share in shares:
            values[u] += scores[i] * share
    return [WordScore(token=texts[seg][s:e], score=float(values[u]), start=s, end=e, segment=seg)
            for u, (seg, s, e) in enumerate(units)]


# --- faithfulness -----------------------------------------------------------------------------------------

def delete_words(text: str, words: Sequence[WordScore]) -> str:
    """``text`` without the character spans of ``words`` (of its first segment), whitespace closed up."""
    keep, at = [], 0
    for w in sorted((w for w in words if w.segment == 0 and w.start >= 0), key=lambda w: w.start):
        keep.append(text[at:w.start])
        at = max(at, w.end)
    keep.append(text[at:])
    return " ".join("".join(keep).split())


def comprehensiveness(predictor: Any, text: str, explanation: Explanation, k: int, *, random_draws: int = 3,
                      seed: int = 0) -> dict[str, float]:
    """How much the probability of the explained label drops when the ``k`` words with the highest attribution
    are deleted from ``text`` (``ig``), and on average over ``random_draws`` deletions of ``k`` random words
    (``random``); ``k`` is capped so that one word is left. A faithful explanation drops it more than chance."""
    words = [w for w in explanation.attributions if w.segment == 0]
    k = max(0, min(k, len(words) - 1))
    target = predictor.labels.index(explanation.label)

    def prob(texts: list[str]) -> np.ndarray:
        return np.asarray(predictor.predict_proba(predictor.to_examples(texts)))[:, target]

    rng = random.Random(seed)
    top = sorted(words, key=lambda w: -w.score)[:k]
    draws = [rng.sample(words, k) for _ in range(random_draws)]
    p = prob([text, delete_words(text, top) or text, *[delete_words(text, d) or text for d in draws]])
    return {"k": float(k), "ig": float(p[0] - p[1]), "random": float(np.mean(p[0] - p[2:])) if draws else 0.0,
            "p": float(p[0])}
