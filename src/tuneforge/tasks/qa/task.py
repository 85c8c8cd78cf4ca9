"""Extractive QA on ``AutoModelForQuestionAnswering`` (the recipe of transformers' run_qa example)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data.cleaning import CleanOptions, CleanReport
from tuneforge.data.dataset import Dataset
from tuneforge.data.splitting import SplitKeys
from tuneforge.errors import DataProblem
from tuneforge.tasks.base import Encoded
from tuneforge.tasks.common import softmax
from tuneforge.tasks.datasets import read_options
from tuneforge.tasks.encoder import EncoderTask
from tuneforge.tasks.qa.data import ALIASES, clean_qa, read_qa
from tuneforge.tasks.qa.metrics import squad_em_f1

__all__ = ["QaTask"]

N_BEST = 20
MAX_ANSWER_TOKENS = 30
MAX_QUESTION_TOKENS = 64


class QaTask(EncoderTask):
    name = "qa"
    columns: tuple[str, ...] = ("question", "context", "answers", "id")
    labelled = False
    label_noun = "answer span"
    long_input_note = "split into overlapping windows."
    windowed = True
    auto_model_kind = "question-answering"
    per_token = True
    main_metric = "f1"
    default_max_length = 384
    detect_order = 20

    # --- data: the reader and cleaner live in data.py -------------------------------------------------------

    def read(self, path: str | os.PathLike[str], **options: Any) -> Dataset:
        return read_qa(path, read_options(self, options), task=self.name)

    def clean(self, ds: Dataset, options: CleanOptions) -> tuple[Dataset, CleanReport]:
        return clean_qa(ds, options)

    def record(self, example: dict[str, Any]) -> dict[str, Any]:
        """The Hugging Face SQuAD layout: id, title (when set), context, question, answers."""
        rec: dict[str, Any] = {"id": example["id"]}
        if example.get("title") is not None:
            rec["title"] = example["title"]
        rec.update(context=example["context"], question=example["question"], answers=example["answers"])
        return rec

    def split_keys(self, examples: Sequence[dict[str, Any]]) -> SplitKeys:
        """Grouped by article (title, or context when titles are missing), so no passage is in two splits."""
        titled = all(ex.get("title") for ex in examples)
        return SplitKeys(groups=[ex["title"] if titled else ex["context"] for ex in examples],
                         group_noun="articles (titles)" if titled else "distinct contexts",
                         group_hint="questions about one passage must stay in one split; add more passages")

    def recognises(self, columns: Sequence[str]) -> bool:
        """A question column and a context (or passage, paragraph) column."""
        cols = {c.lower() for c in columns}
        return "question" in cols and bool(cols & set(ALIASES["context"]))


    def parse_input(self, item: Any, index: int) -> dict[str, Any] | DataProblem:
        """``{"question", "context"[, "id"]}`` as an example, or the problem with it."""
        if not isinstance(item, dict) or not item.get("question") or not item.get("context"):
            return DataProblem(f"input {index + 1}", None, "question/context",
                               "a QA input needs a question and a context", 'pass {"question": ..., "context": ...}')
        return {"id": str(item.get("id", index)), "question": str(item["question"]), "context": str(item["context"]),
                "answers": {"text": [], "answer_start": []}}

    def _tokenize_for_count(self, examples: Sequence[dict[str, Any]], tokenizer: Any) -> Any:
        return tokenizer([e["question"] for e in examples], [e["context"] for e in examples])

    def label_list(self, examples: Sequence[dict[str, Any]], multi_label: bool) -> list[str]:
        return ["start", "end"]

    def build_model(self, base_path: Path, labels: list[str], *, multi_label: bool, **kwargs: Any) -> Any:
        from transformers import AutoModelForQuestionAnswering

        from tuneforge.tasks.common import load_with_head

        return load_with_head(AutoModelForQuestionAnswering, base_path, labels, **kwargs)

    def encode(self, examples: Sequence[dict[str, Any]], tokenizer: Any, labels: list[str], *,
               max_length: int, stride: int = 128, with_labels: bool = True, multi_label: bool = False) -> Encoded:
        # Questions longer than MAX_QUESTION_TOKENS are cut so that every window has room for context.
        questions = []
        for ex in examples:
            q = ex["question"].lstrip()
            ids = tokenizer(q, add_special_tokens=False, return_offsets_mapping=True)
            if len(ids["input_ids"]) > MAX_QUESTION_TOKENS:
                q = q[: ids["offset_mapping"][MAX_QUESTION_TOKENS - 1][1]]
            questions.append(q)
        stride = min(stride, max_length // 2)
        enc = tokenizer(questions, [ex["context"] for ex in examples], truncation="only_second",
                        max_length=max_length, stride=stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True)
        sample_map = enc["overflow_to_sample_mapping"]
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        features: list[dict[str, Any]] = []
        meta: list[dict[str, Any]] = []
        windows = np.zeros(len(examples), dtype=int)
        for i in range(len(enc["input_ids"])):
            ex_i = int(sample_map[i])
            windows[ex_i] += 1
            seq_ids = enc.sequence_ids(i)
            offsets = [o if seq_ids[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][i])]
            f = {k: enc[k][i] for k in keys}
            if with_labels:
                f["start_positions"], f["end_positions"] = self._positions(examples[ex_i], offsets)
            features.append(f)
            meta.append({"offsets": offsets})
        return Encoded(features=features, example_index=[int(s) for s in sample_map], meta=meta,
                       n_examples=len(examples), truncated=int((windows > 1).sum()))

    @staticmethod
    def _positions(ex: dict[str, Any], offsets: list[Any]) -> tuple[int, int]:
        """Token positions of the first answer in this window, or (0, 0) — the [CLS] token — if it is not inside."""
        answers = ex.get("answers") or {"text": [], "answer_start": []}
        if not answers["text"]:
            return 0, 0
        a_start = int(answers["answer_start"][0])
        a_end = a_start + len(answers["text"][0])
        ctx = [k for k, o in enumerate(offsets) if o is not None]
        if not ctx or offsets[ctx[0]][0] > a_start or offsets[ctx[-1]][1] < a_end:
            return 0, 0
        s = next(k for k in ctx if offsets[k][1] > a_start)
        e = next(k for k in reversed(ctx) if offsets[k][0] < a_end)
        return s, max(s, e)

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def decode(self, outputs: list[tuple[np.ndarray, ...]], enc: Encoded, examples: Sequence[dict[str, Any]],
               labels: list[str], *, multi_label: bool = False) -> list[dict[str, Any]]:
        best: list[list[tuple[float, int, int]]] = [[] for _ in examples]
        for (start_logits, end_logits, *_r), ex_i, m in zip(outputs, enc.example_index, enc.meta, strict=True):
            offsets = m["offsets"]
            n = min(len(offsets), len(start_logits))
            ctx = np.array([offsets[k] is not None for k in range(n)])
            s_log = np.where(ctx, start_logits[:n], -np.inf)
            e_log = np.where(ctx, end_logits[:n], -np.inf)
            s_idx = np.argsort(-s_log)[:N_BEST]
            e_idx = np.argsort(-e_log)[:N_BEST]
            for s in s_idx:
                if not ctx[s]:
                    continue
                for e in e_idx:
                    if not ctx[e] or e < s or e - s + 1 > MAX_ANSWER_TOKENS:
                        continue
                    best[ex_i].append((float(s_log[s] + e_log[e]), offsets[s][0], offsets[e][1]))
        preds = []
        for ex, cands in zip(examples, best, strict=True):
            if not cands:
                preds.append({"answer": "", "start": 0, "end": 0, "score": 0.0})
                continue
            cands.sort(key=lambda c: -c[0])
            top = cands[:N_BEST]
            probs = softmax(np.array([c[0] for c in top]))
            _, a, b = top[0]
            preds.append({"answer": ex["context"][a:b], "start": a, "end": b, "score": round(float(probs[0]), 6)})
        return preds

    def score(self, predictions: list[dict[str, Any]], examples: Sequence[dict[str, Any]], labels: list[str], *,
              multi_label: bool = False) -> dict[str, Any]:
        ems, f1s = [], []
        for p, ex in zip(predictions, examples, strict=True):
            em, f1 = squad_em_f1(p["answer"], list((ex.get("answers") or {}).get("text") or []))
            ems.append(em)
            f1s.append(f1)
        return {"exact_match": 100.0 * float(np.mean(ems)) if ems else 0.0,
                "f1": 100.0 * float(np.mean(f1s)) if f1s else 0.0, "n": len(examples)}

    def describe(self, prediction: dict[str, Any], example: dict[str, Any]) -> tuple[bool, str]:
        golds = list((example.get("answers") or {}).get("text") or [])
        em, f1 = squad_em_f1(prediction["answer"], golds)
        return em < 1.0, (f"Q: {example['question']!r} expected {golds[:3]}, predicted {prediction['answer']!r} "
                          f"(F1 {100 * f1:.0f})")
