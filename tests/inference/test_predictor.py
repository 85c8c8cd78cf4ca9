"""Run folders loaded and served: the task parses inputs (every bad one reported at once), runs the model and
drops what only decoding needs; the torch backend serves a run folder through the service; an ensemble folder
loads from a cold start (its run loader registers itself)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tuneforge import runs
from tuneforge.errors import ConfigError, DataError, RunError
from tuneforge.inference import Predictor, load_predictor
from tuneforge.inference.backends.torch import TorchPredictor
from tuneforge.inference.ensemble import EnsemblePredictor, build_ensemble
from tuneforge.inference.predictor import run_loader_kinds
from tuneforge.inference.serving import InferenceService
from tuneforge.tasks import get_task

LABELS = {"classification": ["negative", "positive"], "ner": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
          "qa": ["start", "end"]}


def _run(tmp: Path, base: Path, task_name: str, seed: int = 0) -> Path:
    """A finished ``full`` run folder of ``task_name`` (untrained head over the tiny BERT)."""
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    task = get_task(task_name)
    model = task.build_model(base, LABELS[task_name], multi_label=False)
    out = tmp / f"{task_name}-{seed}"
    model.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    runs.write_manifest(out, {"name": out.name, "task": task_name, "labels": LABELS[task_name], "max_length": 64,
                              "stride": 16, "multi_label": False, "method": "full",
                              "base_model": {"name": "tiny", "path": str(base)}})
    return out


@pytest.fixture(scope="module")
def run_dirs(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("runs")
    return {name: _run(tmp, tiny_bert, name) for name in ("classification", "ner", "qa")}


def test_every_bad_input_is_reported_at_once(run_dirs):
    qa = load_predictor(run_dirs["qa"])
    with pytest.raises(DataError) as e:
        qa.to_examples([{"question": "who?", "context": "paris"}, "just text", {"question": "no context"}])
    assert [p.file for p in e.value.problems] == ["input 2", "input 3"]
    assert "question and a context" in e.value.problems[0].message
    cls = load_predictor(run_dirs["classification"])
    with pytest.raises(DataError) as e:
        cls.to_examples(["fine", "  ", {"text": "a", "text_pair": "b"}, 3])
    assert [p.file for p in e.value.problems] == ["input 2", "input 4"]
    assert cls.to_examples([{"text": "a", "text_pair": "b"}]) == [{"text": "a", "text_pair": "b", "label": None}]


def test_ner_predictions_show_entities_without_decoding_details(run_dirs):
    ner = load_predictor(run_dirs["ner"])
    examples = ner.to_examples(["john lives in paris", "mary visited london"])
    raw = ner.predict_examples(examples)
    assert all(len(p["tags"]) == len(ex["tokens"]) for p, ex in zip(raw, examples, strict=True))  # scoring needs these
    served = TorchPredictor(ner).run(examples)
    public = ner.predict(["john lives in paris", "mary visited london"])
    assert public == served
    for p, r in zip(public, raw, strict=True):
        assert set(p) == {"entities"}
        assert p["entities"] == [{k: v for k, v in e.items() if k != "words"} for e in r["entities"]]
    assert all("words" in e for r in raw for e in r["entities"])  # the task's raw predictions are left as they are
    with pytest.raises(ConfigError, match="classification models, not ner"):
        ner.predict_proba(examples)


def test_class_probabilities_and_token_counts(run_dirs, tiny_bert):
    from transformers import AutoTokenizer

    cls = load_predictor(run_dirs["classification"])
    examples = cls.to_examples(["a good movie", "a bad movie " * 40])
    proba = cls.predict_proba(examples)
    assert proba.shape == (2, 2) and np.allclose(proba.sum(axis=1), 1)
    assert [p["label"] for p in cls.predict_examples(examples)] == [cls.labels[i] for i in proba.argmax(axis=1)]
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    n = [len(ids) for ids in tok(["a good movie", "a bad movie " * 40])["input_ids"]]
    assert n[1] > 64  # the long text is cut at the run's max_length
    assert TorchPredictor(cls).count_tokens(examples) == n[0] + 64


def test_the_torch_backend_serves_a_run_folder(run_dirs):
    svc = InferenceService(capacity_bytes=10**9)  # the default backend: torch
    try:
        preds, tokens = svc.predict("m", run_dirs["ner"], ["john lives in paris"])
        assert set(preds[0]) == {"entities"} and tokens > 4
        (qa_pred,), _ = svc.predict("q", run_dirs["qa"], [{"question": "capital?", "context": "paris is big"}])
        assert set(qa_pred) == {"answer", "start", "end", "score"}
        assert qa_pred["answer"] == "paris is big"[qa_pred["start"]:qa_pred["end"]]
        with pytest.raises(DataError):
            svc.predict("q", run_dirs["qa"], ["no context"])
        assert sorted(svc.cache.keys()) == ["predict:m", "predict:q"] and svc.cache.used_bytes > 0
    finally:
        svc.close()


def test_a_run_folder_is_read_through_the_run_contract(run_dirs, tmp_path):
    with pytest.raises(RunError, match="holds no finished TuneForge model"):
        load_predictor(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in run_dirs["classification"].iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    manifest = json.loads(runs.manifest_path(bad).read_text())
    runs.manifest_path(bad).write_text(json.dumps({**manifest, "task": "summarise"}))
    with pytest.raises(RunError, match="task 'summarise' is not a known task"):
        load_predictor(bad)


def test_an_ensemble_folder_loads_from_a_cold_start(run_dirs, tiny_bert, tmp_path):
    other = _run(tmp_path, tiny_bert, "classification", seed=1)
    ens_dir = tmp_path / "ens"
    manifest = build_ensemble([run_dirs["classification"], other], ens_dir)
    assert manifest["method"] == "ensemble" and runs.read_manifest(ens_dir)["task"] == "classification"
    assert "ensemble" in run_loader_kinds()
    ens = load_predictor(ens_dir)
    assert isinstance(ens, EnsemblePredictor) and not isinstance(ens, Predictor)
    examples = ens.to_examples(["a good movie"])
    a, b = load_predictor(run_dirs["classification"]), load_predictor(other)
    assert np.allclose(ens.predict_proba(examples), (a.predict_proba(examples) + b.predict_proba(examples)) / 2)
    code = ("import sys; from tuneforge.inference.predictor import load_predictor; "
            "print(type(load_predictor(sys.argv[1])).__name__)")
    r = subprocess.run([sys.executable, "-c", code, str(ens_dir)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "EnsemblePredictor"
    with pytest.raises(ConfigError, match="every member must be a classifier"):
        build_ensemble([run_dirs["classification"], run_dirs["ner"]], tmp_path / "mixed")
