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

Preference pairs (DPO) are read but not trained yet: ``encode`` refuses them with a message.
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
from tuneforge.tasks.generation.collate import PackingCollator, PaddingCollator, left_pad, pad_token_id
from tuneforge.tasks.generation.data import MIN_EXAMPLES, parse_prompt, read_generation_data
from tuneforge.tasks.generation.metrics import TokenStats, named_token_metrics, text_scores, token_stats
from tuneforge.tasks.generation.template import (
    IGNORE_INDEX,
    end_of_turn_ids,
    render_dataset,
    render_example,
    render_pair,
    render_prompt,
)

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "GenerationTask", "split_reference"]

#: tokens generated per reply unless told otherwise
DEFAULT_MAX_NEW_TOKENS = 256
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


def _preference_refused() -> ConfigError:
    return ConfigError("data: the file holds preference pairs (chosen / rejected answers), which train with "
                       "--method dpo; supervised fine-tuning (lora, full) needs chat conversations",
                       hint="give a chat file ({\"messages\": [...]}) for SFT; DPO training is not available yet")


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
        data = read_generation_data(path, min_examples=MIN_EXAMPLES if training else 1, file_format=opts.format)
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
            if "messages" not in ex:  # a preference pair: both answers with their shared prompt
                chosen, rejected = render_pair(tokenizer, ex)
                n = len(chosen.input_ids) + len(rejected.input_ids)
                total += min(n, 2 * max_length) if max_length else n
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
        """Rendered conversations: ``input_ids`` and ``labels`` (-100 outside the learned assistant tokens)."""
        if any("messages" not in ex for ex in examples):
            raise _preference_refused()
        rendered = render_dataset(tokenizer, examples, max_length=max_length)
        features = rendered.features if with_labels else [{"input_ids": f["input_ids"]} for f in rendered.features]
        return Encoded(features=features, example_index=list(range(len(examples))),
                       meta=[{"length": n} for n in rendered.lengths], n_examples=len(examples),
                       truncated=rendered.truncated)

    def collator(self, tokenizer: Any, *, packing: bool = False) -> Any:
        """Batches padded to their longest item (right side, labels -100), or padding-free packed rows."""
        return PackingCollator() if packing else PaddingCollator(pad_token_id(tokenizer))

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
                max_new_tokens: int | None = None) -> list[dict[str, Any]]:
        """The reply ``model`` generates for each conversation (greedy, KV cache, left-padded batches sorted by
        length), as ``{"text"}``; with a reference reply also its token statistics (``loss_sum``, ``tokens``,
        ``correct``) for :meth:`score`."""
        if not examples:
            return []
        if any("messages" not in ex for ex in examples):
            raise _preference_refused()
        import torch

        from tuneforge.tasks.encoder import model_dtype_context

        model.eval()
        device = next(model.parameters()).device
        new_tokens = int(max_new_tokens or self.max_new_tokens)
        pad = pad_token_id(tokenizer)
        eos = sorted(end_of_turn_ids(tokenizer, getattr(model, "generation_config", None)))
        split = [split_reference(ex["messages"]) for ex in examples]
        prompts = [render_prompt(tokenizer, prompt)[-max_length:] for prompt, _ in split]
        texts: list[str] = [""] * len(examples)
        order = np.argsort([len(p) for p in prompts], kind="stable")
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = [int(i) for i in order[b: b + batch_size]]
                batch = {k: v.to(device) for k, v in left_pad([prompts[i] for i in idx], pad).items()}
                with model_dtype_context(bf16):
                    out = model.generate(**batch, max_new_tokens=new_tokens, do_sample=False, use_cache=True,
                                         eos_token_id=eos or None, pad_token_id=pad)
                width = batch["input_ids"].shape[1]
                for row, i in zip(out, idx, strict=True):
                    texts[i] = tokenizer.decode(row[width:], skip_special_tokens=True).strip()
                if on_batch:
                    on_batch(len(idx))
            stats = self._reference_stats(model, tokenizer, examples, split, max_length=max_length,
                                          batch_size=batch_size, bf16=bf16, device=device)
        preds: list[dict[str, Any]] = []
        for i, text in enumerate(texts):
            p: dict[str, Any] = {"text": text}
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
        return {"text": prediction["text"]}

    # --- scoring --------------------------------------------------------------------------------------------

    def score(self, predictions: list[dict[str, Any]], examples: Sequence[dict[str, Any]], labels: list[str], *,
              multi_label: bool = False) -> dict[str, Any]:
        """``valid_loss``, ``valid_mean_token_accuracy``, ``valid_perplexity`` (teacher-forced, over every learned
        token) and ``exact_match``, ``f1``, ``rougeL`` (0-100) of the generated replies against the references."""
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

    def describe(self, prediction: dict[str, Any], example: dict[str, Any]) -> tuple[bool, str]:
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
