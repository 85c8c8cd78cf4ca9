"""EDA-style data augmentation (Wei & Zou 2019, "Easy Data Augmentation"): synonym replacement, random
insertion, random swap and random deletion, in English and in Chinese.

Chinese text is segmented into words with ``jieba`` and joined back without spaces. Synonyms come from a source
available offline: the nearest neighbours of a word in the backbone's own input-embedding space (whole-word
vocabulary entries only). Augmented rows are marked ``augmented: True`` with ``augmented_from`` (the index of their
source row); augmentation is applied to training examples only, never to dev or test data.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["EmbeddingSynonyms", "augment_examples", "eda", "split_text"]


def is_cjk(ch: str) -> bool:
    o = ord(ch[0]) if ch else 0
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF


_STOP_WORDS = """
a about above after again against all am an and any are at be been before being below between both
but by can did do does doing don down during each few for from further had has have having he her
here him his how i if in into is it its just me more most my no nor not now of off on once only or
other our out over own s same she should so some such t than that the their them then there these
they this those through to too under up very was we were what when where which who whom why will
with you your
"""
_STOP = frozenset(_STOP_WORDS.split())
_ZH_STOP_WORDS = """
一 一个 上 不 也 了 人 会 你 到 去 和 在 好 就 很 我 是 有 没有 的 看 着 自己 要 说 这 都
"""
_ZH_STOP = frozenset(_ZH_STOP_WORDS.split())


def split_text(text: str) -> tuple[list[str], str]:
    """Words of ``text`` and the string to join them with: jieba words for Chinese, whitespace words otherwise."""
    if any(is_cjk(ch) for ch in text):
        import jieba

        jieba.setLogLevel(60)
        return [w for w in jieba.lcut(text) if w.strip()], ""
    return text.split(), " "


class EmbeddingSynonyms:
    """Nearest whole-word neighbours in a tokenizer's vocabulary by cosine similarity of input embeddings."""

    def __init__(self, tokenizer: Any, embeddings: np.ndarray, *, k: int = 5, min_similarity: float = 0.3) -> None:
        self.k = k
        self.min_similarity = min_similarity
        vocab: dict[str, int] = tokenizer.get_vocab()
        self.sp = any(t.startswith("▁") for t in list(vocab)[:2000])  # SentencePiece marks word starts
        words, ids = [], []
        for tok, i in vocab.items():
            w = tok[1:] if self.sp and tok.startswith("▁") else tok if not self.sp else None
            if not w or tok.startswith("##") or tok.startswith("[") or tok.startswith("<"):
                continue
            if not (w.isalpha() or all(is_cjk(c) for c in w)):
                continue
            words.append(w)
            ids.append(i)
        self.words = words
        self.index = {w: j for j, w in enumerate(words)}
        m = embeddings[np.asarray(ids)].astype(np.float32)
        self.matrix = m / np.linalg.norm(m, axis=1, keepdims=True).clip(min=1e-9)
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def from_model_dir(cls, path: Any, **kw: Any) -> EmbeddingSynonyms:
        from safetensors import safe_open
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path))
        from pathlib import Path

        with safe_open(str(Path(path) / "model.safetensors"), "np") as f:
            name = next(k for k in f.keys() if k.endswith("word_embeddings.weight"))  # noqa: SIM118
            emb = f.get_tensor(name)
        return cls(tok, emb, **kw)

    def __call__(self, word: str) -> list[str]:
        key = word.lower()
        if key in self._cache:
            return self._cache[key]
        j = self.index.get(key, self.index.get(word))
        out: list[str] = []
        if j is not None:
            sims = self.matrix @ self.matrix[j]
            for c in np.argsort(-sims)[1: self.k * 4]:
                w = self.words[int(c)]
                if sims[c] < self.min_similarity or len(out) >= self.k:
                    break
                if w.lower() != key and (is_cjk(w[0]) == is_cjk(word[0])):
                    out.append(w)
        self._cache[key] = out
        return out


def _content(words: list[str]) -> list[int]:
    return [i for i, w in enumerate(words)
            if w.lower() not in _STOP and w not in _ZH_STOP and any(c.isalnum() for c in w)]


def eda(text: str, *, synonyms: Any, rate: float, rng: random.Random) -> str:
    """One augmented version of ``text``: one of the four EDA operations on ~rate of its words."""
    words, sep = split_text(text)
    if len(words) < 2:
        return text
    n = max(1, int(round(rate * len(words))))
    op = rng.choice(["sr", "ri", "rs", "rd"])
    words = list(words)
    if op == "sr":
        cand = _content(words)
        rng.shuffle(cand)
        done = 0
        for i in cand:
            syn = synonyms(words[i])
            if syn:
                words[i] = rng.choice(syn)
                done += 1
            if done >= n:
                break
    elif op == "ri":
        for _ in range(n):
            cand = [i for i in _content(words) if synonyms(words[i])]
            if not cand:
                break
            syn = rng.choice(synonyms(words[rng.choice(cand)]))
            words.insert(rng.randrange(len(words) + 1), syn)
    elif op == "rs":
        for _ in range(n):
            i, j = rng.randrange(len(words)), rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
    else:
        kept = [w for w in words if rng.random() > rate]
        words = kept or [rng.choice(words)]
    return sep.join(words)


def augment_examples(examples: Sequence[dict[str, Any]], *, synonyms: Any, copies: int, rate: float,
                     seed: int) -> list[dict[str, Any]]:
    """The examples followed by ``copies`` augmented versions of each, marked ``augmented: True``."""
    rng = random.Random(seed)
    out = [dict(ex) for ex in examples]
    for i, ex in enumerate(examples):
        seen = {ex["text"]}
        for _ in range(copies):
            new = eda(ex["text"], synonyms=synonyms, rate=rate, rng=rng)
            if new in seen:
                continue
            seen.add(new)
            out.append({**ex, "text": new, "augmented": True, "augmented_from": i})
    return out
