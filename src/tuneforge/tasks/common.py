"""Helpers shared by the task implementations."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["is_cjk", "join_tokens", "load_with_head", "softmax", "split_words"]


def load_with_head(auto_cls: Any, base_path: Path, labels: list[str], **config: Any) -> Any:
    """Load ``base_path`` with a fresh head sized for ``labels``; safetensors only, never remote code."""
    from tuneforge.utils.hf import quiet_transformers

    quiet_transformers()  # "newly initialized head" warnings are expected here
    id2label = {i: label for i, label in enumerate(labels)}
    kwargs = {k: v for k, v in config.items() if v is not None}
    return auto_cls.from_pretrained(
        str(base_path),
        num_labels=len(labels),
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
        ignore_mismatched_sizes=True,  # the base may itself be a fine-tuned model with another head
        use_safetensors=True,
        trust_remote_code=False,
        **kwargs,
    )


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def is_cjk(ch: str) -> bool:
    if not ch:
        return False
    o = ord(ch[0])
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2A6DF or 0xF900 <= o <= 0xFAFF
            or 0x3040 <= o <= 0x30FF or 0xAC00 <= o <= 0xD7AF)


# A word is a run of letters/digits, or a single CJK character, or a single other non-space character.
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|\S", re.UNICODE)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Split raw text into words with character spans: CJK characters are words of their own (as in
    character-level Chinese NER data), punctuation marks too, other runs of letters and digits stay whole."""
    words: list[tuple[str, int, int]] = []
    for m in _WORD.finditer(text):
        w, s = m.group(), m.start()
        if any(is_cjk(c) for c in w):
            # split at CJK characters, keeping non-CJK runs (e.g. "iPhone15") together
            buf_start = None
            for i, c in enumerate(w):
                if is_cjk(c):
                    if buf_start is not None:
                        words.append((w[buf_start:i], s + buf_start, s + i))
                        buf_start = None
                    words.append((c, s + i, s + i + 1))
                elif buf_start is None:
                    buf_start = i
            if buf_start is not None:
                words.append((w[buf_start:], s + buf_start, s + len(w)))
        else:
            words.append((w, s, m.end()))
    return words


def join_tokens(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join pre-split tokens into display text: a space between tokens, except between two CJK characters
    (Chinese is written without spaces). Returns the text and each token's character span."""
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for i, t in enumerate(tokens):
        if i > 0 and not (is_cjk(tokens[i - 1][-1:]) and is_cjk(t[:1])):
            parts.append(" ")
            pos += 1
        parts.append(t)
        spans.append((pos, pos + len(t)))
        pos += len(t)
    return "".join(parts), spans


def nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)
