"""Embeddings from run folders of every kind of method (adapters and virtual tokens applied, the sentence
methods' encoder), and huge inputs cut before they are tokenized with the tokens they give unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from tests.conftest import write_jsonl
from tuneforge.errors import DataError
from tuneforge.inference.embeddings import Embedder, clip_texts, load_embedder
from tuneforge.training import make_config, train

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115
TEXTS = ["a good movie", "awful and boring", "i love this film"]


def _train(tmp_path, tiny_bert, rows, method: str, task: str = "classification"):
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    extra = {"sentence_encoder": "base", "setfit_iterations": 1, "batch_size": 8} if method == "setfit" else {}
    cfg = make_config({"task": task, "data": str(data), "base_model": str(tiny_bert), "output": str(tmp_path / "run"),
                       "epochs": 1, "batch_size": 4, "learning_rate": 5e-3, "precision": "fp32", "method": method,
                       "max_length": 32, **extra})
    return train(cfg, console=QUIET).output


def _unit(vecs: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5))


@pytest.mark.parametrize("method", ["lora", "prompt_tuning", "adapter"])
def test_adapters_and_virtual_tokens_change_the_embeddings(tmp_path, tiny_bert, cls_rows, method):
    run = _train(tmp_path, tiny_bert, cls_rows, method)
    emb = load_embedder(run)
    assert emb.max_length == 32 and emb.dim == 32
    vecs = emb.embed(TEXTS)
    base = Embedder(tiny_bert).embed(TEXTS)
    assert vecs.shape == (3, 32) and _unit(vecs)
    assert not np.allclose(vecs, base, atol=1e-4)  # the trained adapter is applied
    assert np.allclose(emb.embed(TEXTS[:1])[0], vecs[0], atol=1e-5)  # alone or batched with longer texts


def test_a_merged_lora_run_embeds_like_its_run(tmp_path, tiny_bert, cls_rows):
    from tuneforge.inference.export import export_merged

    run = _train(tmp_path, tiny_bert, cls_rows, "lora")
    export_merged(run, tmp_path / "merged")
    assert np.allclose(load_embedder(run).embed(TEXTS), load_embedder(tmp_path / "merged").embed(TEXTS), atol=1e-5)


def test_a_setfit_run_embeds_with_its_fine_tuned_encoder(tmp_path, tiny_bert, cls_rows):
    import torch

    run = _train(tmp_path, tiny_bert, cls_rows, "setfit")
    emb = load_embedder(run)
    vecs = emb.embed(TEXTS)
    model = emb.model  # the sentence classifier's own embedding (its head's input), written independently
    with torch.no_grad():
        enc = emb.tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
        own = model.embed(enc["input_ids"], enc["attention_mask"]).numpy()
    own = own / np.linalg.norm(own, axis=1, keepdims=True)
    assert _unit(vecs) and np.allclose(vecs, own, atol=1e-5)
    assert not np.allclose(vecs, Embedder(tiny_bert).embed(TEXTS), atol=1e-4)


def test_bad_inputs_are_reported_at_once(tiny_bert):
    emb = Embedder(tiny_bert)
    with pytest.raises(DataError) as e:
        emb.prepare(["fine", " ", 3])
    assert [p.file for p in e.value.problems] == ["input 2", "input 3"]


class _Spy:
    """A tokenizer that records the length of every text it is given."""

    def __init__(self, tok):
        self.tok, self.seen = tok, []

    def __call__(self, texts, **kw):
        self.seen.extend(len(t) for t in texts)
        return self.tok(texts, **kw)


def test_huge_inputs_are_cut_before_tokenizing_and_give_the_same_tokens(tiny_bert):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    blanks = "a" + " " * 90_000 + " good movie"  # tokens only at its ends: kept whole
    texts = ["good fun " * 20_000, blanks, "paris " * 3000 + "x" * 5000, "短" * 50_000, "a good movie"]
    spy = _Spy(tok)
    clipped = clip_texts(texts, spy, 64)
    assert clipped[1] == blanks and clipped[-1] == texts[-1]
    assert len(clipped[0]) < 2000 and len(clipped[3]) < 2000  # ordinary text: one short prefix
    whole = tok(texts, truncation=True, max_length=64)["input_ids"]
    assert tok(clipped, truncation=True, max_length=64)["input_ids"] == whole
    emb = Embedder(tiny_bert, max_length=64)
    emb.tokenizer = spy
    spy.seen.clear()
    assert emb.count_tokens(emb.prepare(texts)) == sum(len(ids) for ids in whole)
    vecs = emb.embed(texts)
    assert {len(texts[0]), len(texts[2]), len(texts[3])}.isdisjoint(spy.seen)  # never tokenized whole
    encoder = AutoModel.from_pretrained(str(tiny_bert)).eval()
    with torch.no_grad():  # the whole texts, tokenized and truncated by transformers
        for text, vec in zip(texts, vecs, strict=True):
            hidden = encoder(**tok([text], truncation=True, max_length=64, return_tensors="pt")).last_hidden_state
            v = hidden[0].mean(0).numpy()
            assert np.allclose(vec, v / np.linalg.norm(v), atol=1e-5)
