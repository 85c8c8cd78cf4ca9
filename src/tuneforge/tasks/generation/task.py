"""Generative fine-tuning (chat SFT) of a causal language model: the ``generation`` task.

The task goes through the same data -> train -> evaluate -> predict path as the encoder tasks, with its own
answers to the protocol:

* ``read`` validates any of the chat layouts (:mod:`.data`) into ``{"messages": [...]}`` examples;
* ``encode`` renders them with the tokenizer's chat template (:func:`.template.render_dataset`): the labels are
  the assistant tokens (and their end-of-turn token), everything else is -100; ``collator`` pads a batch to its
  longest item, or packs it padding-free (``packing=True``);
* during training, evaluation reports ``valid_loss`` and ``valid_mean_token_accuracy`` (OpenAI's names) from the
  logits (``preprocess_logits`` + ``token_metrics``) without generating; the best checkpoint is the one with the
  *lowest* ``valid_loss`` (``greater_is_better = False``);
* ``predict`` generates the next assistant reply of each conversation from the prompt rendered by
  :func:`.template.render_prompt` (the one rendering training, predict, chat and serving share): greedy by
  default, KV cache, left-padded batches. When the example holds a reference reply (an evaluation file), the
  prediction also carries the teacher-forced loss of the whole conversation, so ``score`` reports
  ``valid_loss``, ``valid_mean_token_accuracy``, ``exact_match``, ``f1`` and ``rougeL`` together.

Preference pairs (``{"prompt", "chosen", "rejected"}``) train with ``--method dpo`` (:mod:`.preference`):
``encode`` renders both answers with :func:`.template.render_pair`, and ``predict`` / ``score`` give each pair's
implicit reward instead of generating (``preference_accuracy``, ``reward_margin``; a DPO run's reward is its
log-probability ratio to its reference, a base model's or supervised run's the plain log-probability).
:meth:`GenerationTask.check_method_data` refuses a file of the kind the method does not train on (pairs for
SFT, conversations for DPO) with a message naming the method that fits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data.dataset import Dataset
from tuneforge.data.formats import fingerprint
from tuneforge.errors import ConfigError, DataProblem
from tuneforge.tasks.base import Encoded
from tuneforge.tasks.datasets import read_options
from tuneforge.tasks.generation.collate import PackingCollator, PaddingCollator, pad_token_id
from tuneforge.tasks.generation.data import MIN_EXAMPLES, parse_prompt, read_generation_data
from tuneforge.tasks.generation.generate import DEFAULT_MAX_NEW_TOKENS, GenerationOptions, context_length, generate
from tuneforge.tasks.generation.metrics import TokenStats, named_token_metrics, text_scores, token_stats
from tuneforge.tasks.generation.preference import (
    PreferenceLoss,
    describe_pair,
    encode_pairs,
    is_pair,
    predict_pairs,
    score_pairs,
)
from tuneforge.tasks.generation.template import (
    IGNORE_INDEX,
    render_dataset,
    render_example,
    render_prompt,
)

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "GenerationTask", "split_reference"]

#: the keys of the columns a generation file may have (any of the layouts in :mod:`.data`)
_SIGNATURES = ({"messages"}, {"conversations"}, {"prompt", "completion"}, {"instruction", "output"},
               {"chosen", "rejected"}, {"input", "preferred_output"})


def split_reference(messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """The prompt of a conversation (everything before its last assistant reply) and that reply (None when the
    conversation does not end with one: a prompt to answer)."""
    msgs = list(messages)
    if msgs and msgs[-1].get("role") == "assistant":
        return [{k: v for k, v in m.items() if k != "weight"} for m in msgs[:-1]], str(msgs[-1]["content"])
    return [{k: v for k, v in m.items() if k != "weight"} for m in msgs], None


def _preference_refused(file: str = "the file", method: str = "lora") -> ConfigError:
    return ConfigError(f"data: {file} holds preference pairs (chosen / rejected answers), which train with "
                       f"--method dpo; supervised fine-tuning (--method {method}) needs chat conversations",
                       hint="train this file with --method dpo (from a base model or a supervised run), or give a "
                            "chat file ({\"messages\": [...]}) for supervised fine-tuning")


def _conversations_refused(file: str = "the file") -> ConfigError:
    return ConfigError(f"data: DPO needs preference pairs (a chosen and a rejected answer to each prompt); {file} "
                       "holds chat conversations, which train with --method lora or full (supervised fine-tuning)",
                       hint="write pairs as OpenAI's {\"input\": {\"messages\": [...]}, \"preferred_output\": [...], "
                            "\"non_preferred_output\": [...]} or TRL's {\"prompt\", \"chosen\", \"rejected\"}; "
                            "or train this file with --method lora first and DPO from that run (--base-model RUN)")


class GenerationTask:
    name = "generation"
    main_metric = "valid_loss"
    #: the best checkpoint has the lowest validation loss
    greater_is_better = False
    default_max_length = 1024
    per_token = True
    columns: tuple[str, ...] = ("messages",)
    labelled = False
    label_noun = "reply"
    multi_label_capable = False
    long_input_note = "truncated."
    sequence_level = False
    windowed = False
    auto_model_kind = "causal-lm"
    generative = True
    closed_label_set = False
    detect_order = 30
    #: the method a run of this task uses when none is named
    default_method = "lora"
    max_new_tokens = DEFAULT_MAX_NEW_TOKENS

    # --- data -----------------------------------------------------------------------------------------------

    def read(self, path: str | os.PathLike[str], **options: Any) -> Dataset:
        """Read a chat, prompt/completion, Alpaca, ShareGPT or preference file (see :mod:`.data`).

        A training file (the trainer asks for ``min_classes`` 2) needs OpenAI's minimum of 10 examples; an
        evaluation file any number.
        """
        opts = read_options(self, options)
        training = int(options.get("min_classes") or 1) >= 2
        data = read_generation_data(path, min_examples=MIN_EXAMPLES if training else 1, file_format=opts.format,
                                    require_reply=opts.require_labels)
        return Dataset(path=str(path), format="+".join(data.formats) or "chat", task=self.name,
                       examples=data.examples, lines=data.lines, fingerprint=fingerprint(path), labels=[])

    def clean(self, ds: Dataset, options: Any) -> Any:
        raise ConfigError(f"task: the {self.name} task has no cleaner")

    def record(self, example: dict[str, Any]) -> dict[str, Any]:
        return dict(example)

    def split_keys(self, examples: Sequence[dict[str, Any]]) -> Any:
        from tuneforge.data.splitting import SplitKeys

        return SplitKeys()

    def recognises(self, columns: Sequence[str]) -> bool:
        """A chat file (``messages``), ShareGPT, prompt/completion, Alpaca or a preference-pair file."""
        cols = {c.lower() for c in columns}
        return any(sig <= cols for sig in _SIGNATURES)

    def label_occurrences(self, example: dict[str, Any]) -> list[str]:
        return []

    def parse_input(self, item: Any, index: int) -> dict[str, Any] | DataProblem:
        """A string (one user message), a list of messages or ``{"messages": [...]}`` as a conversation."""
        msgs = parse_prompt(item, index)
        if isinstance(msgs, DataProblem):
            return msgs
        return {"messages": msgs}

    def count_tokens(self, examples: Sequence[dict[str, Any]], tokenizer: Any, max_length: int | None = None) -> int:
        """Tokens of the rendered conversations (prompts for those without a reply), cut at ``max_length``."""
        total = 0
        for ex in examples:
            if is_pair(ex):  # a preference pair: both answers with their shared prompt, as training cuts them
                [f] = encode_pairs(tokenizer, [ex], max_length=max_length).features
                total += len(f["input_ids"]) + len(f["rejected_input_ids"])
                continue
            prompt, reference = split_reference(ex["messages"])
            n = len(render_example(tokenizer, ex["messages"]).input_ids) if reference is not None else len(
                render_prompt(tokenizer, prompt))
            total += min(n, max_length) if max_length else n
        return total

    def auto_hyperparameters(self, *, n_train: int, encoder_size: int) -> dict[str, Any]:
        """4e-5 before the method's scale (LoRA's x5 gives 2e-4, the usual LoRA SFT rate), batch 8."""
        return {"learning_rate": 4e-5, "batch_size": 8}

    def label_list(self, examples: Sequence[dict[str, Any]], multi_label: bool) -> list[str]:
        return []

    # --- model ----------------------------------------------------------------------------------------------

    def build_model(self, base_path: Path, labels: list[str], *, multi_label: bool, **kwargs: Any) -> Any:
        """The causal LM in ``base_path`` in float32 (safetensors only, never remote code); encoder options such as
        dropout do not apply."""
        import torch
        from transformers import AutoModelForCausalLM

        from tuneforge.utils.hf import quiet_transformers

        quiet_transformers()
        return AutoModelForCausalLM.from_pretrained(str(base_path), use_safetensors=True, trust_remote_code=False,
                                                    dtype=torch.float32)

    def encode(self, examples: Sequence[dict[str, Any]], tokenizer: Any, labels: list[str], *,
               max_length: int, stride: int = 128, with_labels: bool = True, multi_label: bool = False) -> Encoded:
        """Rendered conversations: ``input_ids`` and ``labels`` (-100 outside the learned assistant tokens); for
        preference pairs, pair features (:func:`.preference.encode_pairs`: the chosen side as ``input_ids`` /
        ``labels``, the rejected side as ``rejected_input_ids`` / ``rejected_labels``)."""
        kinds = {is_pair(ex) for ex in examples}
        if kinds == {True}:
            pairs = encode_pairs(tokenizer, examples, max_length=max_length)
            return Encoded(features=pairs.features, example_index=list(range(len(examples))),
                           meta=[{"length": n} for n in pairs.lengths], n_examples=len(examples),
                           truncated=pairs.truncated)
        if len(kinds) > 1:
            raise ConfigError("data: preference pairs and chat conversations are mixed in one set of examples",
                              hint="keep one kind of example per file")
        rendered = render_dataset(tokenizer, examples, max_length=max_length)
        features = rendered.features if with_labels else [{"input_ids": f["input_ids"]} for f in rendered.features]
        return Encoded(features=features, example_index=list(range(len(examples))),
                       meta=[{"length": n} for n in rendered.lengths], n_examples=len(examples),
                       truncated=rendered.truncated)

    def collator(self, tokenizer: Any, *, packing: bool = False) -> Any:
        """Batches padded to their longest item (right side, labels -100), or padding-free packed rows. (Pair
        features batch with :class:`.preference.PairCollator`, which the preference loss brings.)"""
        return PackingCollator() if packing else PaddingCollator(pad_token_id(tokenizer))

    def check_method_data(self, ds: Dataset, *, method: str, preference: bool) -> None:
        """Refuse a file of the kind ``method`` does not train on, naming the method that fits: preference pairs
        for supervised fine-tuning, chat conversations for DPO (``preference``: the method trains on pairs)."""
        has_pairs = any(is_pair(ex) for ex in ds.examples)
        if has_pairs and not preference:
            raise _preference_refused(ds.path, method)
        if preference and not has_pairs:
            raise _conversations_refused(ds.path)

    def preference_loss(self, model: Any, tokenizer: Any) -> PreferenceLoss:
        """The preference (DPO) loss of ``model`` against the reference its tuning method attached to it."""
        return PreferenceLoss(model, tokenizer)

    def training_loss(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None,
                      metrics: dict[str, Any] | None = None) -> Any:
        """The training loss over the learned tokens, projecting only their positions onto the vocabulary
        (:func:`.loss.sparse_causal_lm_loss`): the model's own loss at a fraction of the head's cost. ``metrics``
        receives the per-token ``mean_token_accuracy`` of the batch."""
        from tuneforge.tasks.generation.loss import sparse_causal_lm_loss

        return sparse_causal_lm_loss(model, inputs, num_items_in_batch, metrics)

    # --- evaluation during training: token metrics from the logits, no generation ---------------------------

    def preprocess_logits(self, logits: Any, labels: Any) -> Any:
        """Trainer's ``preprocess_logits_for_metrics``: per position, the loss of predicting its label from the
        previous position and whether the argmax was right, shape [batch, seq, 2] (0 where nothing is learned),
        so the whole vocabulary's logits are never gathered."""
        import torch

        if isinstance(logits, tuple):
            logits = logits[0]
        with torch.no_grad():
            shift = logits[:, :-1, :].float()
            target = labels[:, 1:]
            keep = (target != IGNORE_INDEX).float()
            logp = torch.log_softmax(shift, dim=-1)
            nll = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            correct = (shift.argmax(-1) == target).float()
            head = torch.zeros(labels.shape[0], 1, 2, device=shift.device)
            body = torch.stack([nll * keep, correct * keep], dim=-1)
            return torch.cat([head, body], dim=1)

    def token_metrics(self, eval_pred: Any) -> dict[str, float]:
        """``valid_loss``, ``valid_mean_token_accuracy`` and ``valid_perplexity`` of a Trainer evaluation whose
        predictions came through :meth:`preprocess_logits`."""
        preds = eval_pred.predictions
        preds = np.asarray(preds[0] if isinstance(preds, tuple) else preds)
        labels = np.asarray(eval_pred.label_ids)
        mask = labels != IGNORE_INDEX
        mask[:, 0] = False  # the first position is predicted by nothing
        stats = TokenStats(float(preds[..., 0][mask].sum()), int(mask.sum()), int(round(preds[..., 1][mask].sum())))
        return named_token_metrics(stats, "valid")

    # --- prediction: generate the next reply ----------------------------------------------------------------

    def predict(self, model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], labels: list[str], *,
                max_length: int, stride: int = 128, multi_label: bool = False, batch_size: int = 64,
                bf16: bool = False, on_batch: Callable[[int], None] | None = None,
                generation: GenerationOptions | None = None, **options: Any) -> list[dict[str, Any]]:
        """The reply ``model`` generates for each conversation, through :func:`.generate.generate` (greedy unless
        ``temperature`` is given, KV cache, left-padded batches sorted by length), as ``{"text", "finish_reason",
        "prompt_tokens", "completion_tokens"}``; with a reference reply also its token statistics (``loss_sum``,
        ``tokens``, ``correct``) for :meth:`score`.

        ``generation`` and the keyword ``options`` (``max_new_tokens``, ``temperature``, ``top_p``, ``top_k``,
        ``repetition_penalty``, ``seed``, ``stop``; ``None`` is "not given") say how to decode; an unknown or
        invalid option is a :class:`ConfigError`. Prompts longer than ``max_length`` (or than the model's context
        less one token for the reply) keep their last tokens."""
        if not examples:
            return []
        if any(is_pair(ex) for ex in examples):  # preference pairs: their implicit rewards, nothing generated
            return predict_pairs(model, tokenizer, examples, max_length=max_length, batch_size=batch_size, bf16=bf16,
                                 on_batch=on_batch)
        import torch

        opts = GenerationOptions.of(generation or GenerationOptions(max_new_tokens=self.max_new_tokens), **options)
        split = [split_reference(ex["messages"]) for ex in examples]
        context = context_length(model)
        keep = max_length if context is None else min(max_length, context - 1)  # room for a reply
        prompts = [render_prompt(tokenizer, prompt)[-keep:] for prompt, _ in split]
        gens = generate(model, tokenizer, prompts, opts, batch_size=batch_size, bf16=bf16, on_batch=on_batch)
        with torch.inference_mode():
            stats = self._reference_stats(model, tokenizer, examples, split, max_length=max_length,
                                          batch_size=batch_size, bf16=bf16, device=next(model.parameters()).device)
        preds: list[dict[str, Any]] = []
        for i, g in enumerate(gens):
            p: dict[str, Any] = {"text": g.text, "finish_reason": g.finish_reason, "prompt_tokens": g.prompt_tokens,
                                 "completion_tokens": g.completion_tokens}
            s = stats[i]
            if s is not None:
                p.update(loss_sum=s.loss_sum, tokens=s.tokens, correct=s.correct)
            preds.append(p)
        return preds

    def _reference_stats(self, model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]],
                         split: list[tuple[list[dict[str, Any]], str | None]], *, max_length: int, batch_size: int,
                         bf16: bool, device: Any) -> list[TokenStats | None]:
        """Teacher-forced token statistics of the conversations that hold a reference reply (as in training)."""
        from tuneforge.tasks.encoder import model_dtype_context

        with_ref = [i for i, (_, ref) in enumerate(split) if ref is not None]
        out: list[TokenStats | None] = [None] * len(examples)
        if not with_ref:
            return out
        feats = render_dataset(tokenizer, [examples[i] for i in with_ref], max_length=max_length).features
        collate = PaddingCollator(pad_token_id(tokenizer))
        for b in range(0, len(with_ref), batch_size):
            chunk = feats[b: b + batch_size]
            batch = {k: v.to(device) for k, v in collate(chunk).items()}
            with model_dtype_context(bf16):
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            for j in range(len(chunk)):
                out[with_ref[b + j]] = token_stats(logits[j: j + 1], batch["labels"][j: j + 1])
        return out

    def public_prediction(self, prediction: dict[str, Any]) -> dict[str, Any]:
        if "text" not in prediction:  # a preference pair's rewards
            return {k: prediction[k] for k in ("chosen_reward", "rejected_reward", "preferred")}
        return {k: prediction[k] for k in ("text", "finish_reason", "prompt_tokens", "completion_tokens")
                if k in prediction}

    # --- scoring --------------------------------------------------------------------------------------------

    def score(self, predictions: list[dict[str, Any]], examples: Sequence[dict[str, Any]], labels: list[str], *,
              multi_label: bool = False) -> dict[str, Any]:
        """``valid_loss``, ``valid_mean_token_accuracy``, ``valid_perplexity`` (teacher-forced, over every learned
        token) and ``exact_match``, ``f1``, ``rougeL`` (0-100) of the generated replies against the references;
        for preference pairs ``preference_accuracy``, ``reward_margin`` ... (:func:`.preference.score_pairs`)."""
        if examples and all(is_pair(ex) for ex in examples):
            return score_pairs(predictions)
        stats = TokenStats()
        for p in predictions:
            if p.get("tokens"):
                stats += TokenStats(float(p["loss_sum"]), int(p["tokens"]), int(p["correct"]))
        metrics: dict[str, Any] = named_token_metrics(stats, "valid") if stats.tokens else {}
        pairs = [(p["text"], ref) for p, ex in zip(predictions, examples, strict=True)
                 for ref in [split_reference(ex["messages"])[1]] if ref is not None]
        if pairs:
            scores = text_scores([t for t, _ in pairs], [r for _, r in pairs])
            metrics.update({k: scores[k] for k in ("exact_match", "f1", "rougeL")})
        metrics["n"] = len(examples)
        return metrics

    def report_sections(self, predictions: Sequence[dict[str, Any]], examples: Sequence[dict[str, Any]],
                        lines: Sequence[int | None]) -> list[str] | None:
        """report.md's tables of prompt / reference / generated reply, the worst and a sample
        (:func:`.samples.reply_tables`); None (the report's list of mistakes) when no reply was generated."""
        from tuneforge.tasks.generation.samples import reply_tables

        return reply_tables(predictions, examples, lines, split_reference=split_reference) or None

    def describe(self, prediction: dict[str, Any], example: dict[str, Any]) -> tuple[bool, str]:
        if is_pair(example):
            return describe_pair(prediction, example)
        prompt, ref = split_reference(example["messages"])
        if ref is None:
            return False, ""
        scores = text_scores([prediction["text"]], [ref])
        asked = prompt[-1]["content"] if prompt else ""
        return scores["exact_match"] < 100.0, (f"prompt {asked[:200]!r} expected {ref[:200]!r}, generated "
                                               f"{prediction['text'][:200]!r} (F1 {scores['f1']:.0f})")

    def decode(self, outputs: list[tuple[np.ndarray, ...]], enc: Encoded, examples: Sequence[dict[str, Any]],
               labels: list[str], *, multi_label: bool = False) -> list[dict[str, Any]]:
        raise ConfigError("task: generation predictions come from generate (GenerationTask.predict), not from "
                          "decoding logits")
