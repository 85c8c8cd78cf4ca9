"""Shared fixtures: a tiny BERT built in-process (seconds to train), and the shared datasets when present."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

# the browser tests' fixtures (one Playwright instance for the whole run)
pytest_plugins = ["tests.browser"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ASSETS = Path(__file__).parent / "assets"


def shared_dir() -> Path:
    env = os.environ.get("TUNEFORGE_SHARED_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def shared_datasets() -> Path:
    d = shared_dir() / "datasets"
    if not d.is_dir():
        pytest.skip(f"needs the shared datasets at {d} (set TUNEFORGE_SHARED_DIR to the folder holding datasets/)")
    return d


def make_tiny_bert(dest: Path) -> Path:
    """A 2-layer BERT (hidden 32) with a WordPiece tokenizer over tests/assets/vocab.txt, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    vocab = (ASSETS / "vocab.txt").read_text(encoding="utf-8").split("\n")
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(v for v in vocab if v)}, do_lower_case=True)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=37, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(str(dest), safe_serialization=True)
    tok.save_pretrained(str(dest))
    return dest


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def make_tiny_chat_model(dest: Path) -> Path:
    """A random tiny Llama (2 layers, hidden 32, 256 positions) and a byte-level BPE tokenizer with a ChatML
    template, saved as a local causal-LM folder: a stand-in for smollm2 that loads in a fraction of a second."""
    from tests.tasks.test_generation_collate import tiny_llama
    from tests.tasks.test_generation_template import tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_llama(tok)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(str(dest), safe_serialization=True)
    tok.save_pretrained(str(dest))
    return dest


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a random tiny Llama and a ChatML tokenizer (:func:`make_tiny_chat_model`)."""
    return make_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat-model"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def cls_rows() -> list[dict]:
    good = ["a good movie", "great fun film", "i love this film", "very good", "a great film", "good fun"]
    bad = ["a bad movie", "awful and boring", "i hate this film", "very bad", "not good", "boring film"]
    return [{"text": t, "label": "positive"} for t in good] + [{"text": t, "label": "negative"} for t in bad]


@pytest.fixture
def ner_rows() -> list[dict]:
    return [
        {"tokens": ["john", "lives", "in", "paris"], "tags": ["B-PER", "O", "O", "B-LOC"]},
        {"tokens": ["mary", "works", "at", "acme", "corp"], "tags": ["B-PER", "O", "O", "B-ORG", "I-ORG"]},
        {"tokens": ["he", "visited", "london"], "tags": ["O", "O", "B-LOC"]},
        {"tokens": ["张", "三", "在", "北", "京"], "tags": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]},
    ] * 3


@pytest.fixture
def qa_rows() -> list[dict]:
    ctx = "paris is the capital of france. berlin is the capital of germany. the river in london is long."
    qs = [("what is the capital of france?", "paris"), ("what is the capital of germany?", "berlin"),
          ("where is the river?", "london")]
    return [{"id": f"q{i}-{k}", "title": "t", "context": ctx, "question": q,
             "answers": {"text": [a], "answer_start": [ctx.index(a)]}}
            for k in range(3) for i, (q, a) in enumerate(qs)]


class RecordingTokenizer:
    """Wraps a tokenizer and remembers the longest text (or word list) it was ever given."""

    def __init__(self, tok: Any) -> None:
        self.tok, self.longest = tok, 0

    def __call__(self, first: Any, second: Any = None, **kw: Any) -> Any:
        for seq in (first, second or []):
            self.longest = max([self.longest, *(len(x) for x in seq)])
        return self.tok(first, second, **kw) if second is not None else self.tok(first, **kw)


# --- an S3 endpoint on loopback (moto's server mode), for the s3:// artifact storage tests ---------------------
@pytest.fixture(scope="session")
def moto_s3_endpoint() -> Any:
    """``http://127.0.0.1:<free port>`` served by moto's S3 for the whole session (stopped afterwards)."""
    import logging
    import socket

    try:
        import boto3  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        pytest.skip(f"the s3:// storage tests need boto3 and moto[server] (pip install 'tuneforge[s3,dev]'): {e}")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new empty bucket on the moto endpoint, with the standard AWS variables pointing every client at it."""
    import secrets

    import boto3

    for name, value in {"AWS_ENDPOINT_URL": moto_s3_endpoint, "AWS_ACCESS_KEY_ID": "test",
                        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    bucket = f"tf-test-{secrets.token_hex(4)}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket
