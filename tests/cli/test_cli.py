"""The command line as a user meets it: clear errors without tracebacks, nothing half-written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_jsonl

EXE = [sys.executable, "-m", "tuneforge.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
                               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


def test_malformed_jsonl_names_the_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": "positive"}\n{"text": "oops" "label": 1}\n')
    r = run("train", "--task", "classification", "--data", str(bad), "--base-model", "bert-tiny",
            "--output", str(tmp_path / "out"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
    assert "bad.jsonl:2" in r.stderr and "not valid JSON" in r.stderr
    assert not (tmp_path / "out").exists()


def test_missing_column_and_unknown_base_model_in_one_go(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"sentence": "a", "y": "p"}, {"sentence": "b", "y": "n"}])
    r = run("train", "--task", "classification", "--data", str(data), "--output", str(tmp_path / "o"),
            "--base-model", "no-such-model")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "label" in r.stderr and "--label-column" in r.stderr
    r = run("train", "--task", "classification", "--data", str(data), "--output", str(tmp_path / "o"),
            "--base-model", "no-such-model", "--label-column", "y")
    assert r.returncode == 2 and "Unknown base model 'no-such-model'" in r.stderr and "minilm" in r.stderr
    assert not (tmp_path / "o").exists()


def test_bad_options_are_all_listed(tmp_path):
    r = run("train", "--task", "summarize", "--data", "x.jsonl", "--output", str(tmp_path / "o"), "--epochs", "-2")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "task" in r.stderr and "epochs" in r.stderr


def test_distillation_options_reach_the_config(tmp_path):
    r = run("train", "--task", "classification", "--data", "x.jsonl", "--output", str(tmp_path / "o"),
            "--distill-alpha", "1.5", "--distill-temperature", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "distill_alpha" in r.stderr and "distill_temperature" in r.stderr


def test_freeze_layers_takes_a_number_or_auto(tmp_path):
    r = run("train", "--task", "classification", "--data", "x.jsonl", "--output", str(tmp_path / "o"),
            "--freeze-layers", "some")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    # refused as the flag is read, naming it (as a plain number flag is)
    assert "Invalid value for '--freeze-layers'" in r.stderr and "neither a number nor auto" in r.stderr


def test_the_cli_collects_garbage_rarely_and_freezes_it_at_exit():
    """Start-up and tear-down of a torch process: see tuneforge.cli._tune_gc."""
    code = ("import atexit, gc, sys; from tuneforge import cli; calls = []; "
            "atexit.register = lambda f: calls.append(f); cli._tune_gc(); "
            "print(gc.get_threshold(), calls == [gc.freeze])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "(100000, 50, 100) True", r.stderr


def test_models_lists_the_offline_models():
    r = run("models")
    assert r.returncode == 0
    for name in ("minilm", "e5-multilingual", "bert-tiny"):
        assert name in r.stdout


def test_data_check_clean_split(tmp_path, cls_rows):
    rows = cls_rows + [{"text": "<b>a good movie</b>", "label": "positive"}, {"text": "   ", "label": "negative"}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    r = run("data", "check", str(data))
    assert r.returncode == 2 and "d.jsonl:14" in r.stderr  # the blank text, by line
    r = run("data", "clean", str(data), "-o", str(tmp_path / "clean.jsonl"))
    assert r.returncode == 0, r.stderr
    assert "duplicate" in r.stdout and "empty" in r.stdout
    cleaned = [json.loads(x) for x in (tmp_path / "clean.jsonl").read_text().splitlines()]
    assert len(cleaned) == len(cls_rows)
    r = run("data", "split", str(tmp_path / "clean.jsonl"), "--dev", "0.25", "--test", "0.25", "--seed", "1")
    assert r.returncode == 0, r.stderr
    parts = {n: [json.loads(x) for x in (tmp_path / f"clean.{n}.jsonl").read_text().splitlines()]
             for n in ("train", "dev", "test")}
    assert sum(len(p) for p in parts.values()) == len(cls_rows)
    for p in parts.values():  # stratified: both labels in every split
        assert {r["label"] for r in p} == {"positive", "negative"}


def test_train_evaluate_predict_on_a_local_folder(tmp_path, tiny_bert, cls_rows, ner_rows):
    data = write_jsonl(tmp_path / "train.jsonl", cls_rows)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"task: classification\ndata: {data}\nbase_model: {tiny_bert}\noutput: {tmp_path / 'run'}\n"
                   "epochs: 1\nbatch_size: 4\nprecision: fp32\n")
    r = run("train", "--config", str(cfg), "--epochs", "2")
    assert r.returncode == 0, r.stderr
    man = json.loads((tmp_path / "run" / "tuneforge.json").read_text())
    assert man["config"]["epochs"] == 2  # the flag overrides the file
    # the whole command is timed from process start: at least the training call, plus the imports before it
    m = re.search(r"whole command (\d+)s, (\d+)s of it start-up and imports", " ".join(r.stdout.split()))
    assert m, r.stdout
    total, startup = int(m.group(1)), int(m.group(2))
    assert total >= round(man["training"]["wall_seconds"]) and startup >= 1 and startup <= total < 600
    r = run("train", "--config", str(cfg))
    assert r.returncode == 2 and "--overwrite" in r.stderr  # refuses to clobber a finished run
    r = run("evaluate", str(tmp_path / "run"), "--data", str(data), "--name", "train")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "run" / "eval-train" / "metrics.json").read_text())
    assert "accuracy" in metrics and "macro_f1" in metrics
    assert (tmp_path / "run" / "eval-train" / "confusion_matrix.png").stat().st_size > 1000
    assert "## Errors" in (tmp_path / "run" / "eval-train" / "report.md").read_text()
    r = run("predict", str(tmp_path / "run"), "a good film", "awful")
    assert r.returncode == 0
    assert len([x for x in r.stdout.splitlines() if x.startswith(("positive", "negative"))]) == 2
    r = run("predict", str(tmp_path / "run"), "--data", str(data), "-o", str(tmp_path / "p.jsonl"))
    assert r.returncode == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == len(cls_rows)
    # an unknown label in evaluation data is named, with a suggestion
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "label": "postive"}])
    r = run("evaluate", str(tmp_path / "run"), "--data", str(bad))
    assert r.returncode == 2 and "postive" in r.stderr and "positive" in r.stderr


@pytest.mark.parametrize("what", ["missing", "unfinished"])
def test_predict_on_a_folder_that_is_not_a_model(tmp_path, what):
    folder = tmp_path / "x"
    if what == "unfinished":
        folder.mkdir()
        (folder / "run-config.json").write_text("{}")
    r = run("predict", str(folder), "hello")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    if what == "unfinished":
        assert "--resume" in r.stderr


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path, tiny_bert, cls_rows):
    import os
    import signal
    import time

    data = write_jsonl(tmp_path / "train.jsonl", cls_rows * 20)
    out = tmp_path / "run"
    args = ["train", "--task", "classification", "--data", str(data), "--base-model", str(tiny_bert),
            "--output", str(out), "--epochs", "10", "--batch-size", "4", "--precision", "fp32"]
    proc = subprocess.Popen([*EXE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not list((out / "checkpoints").glob("checkpoint-*/trainer_state.json")):
            time.sleep(0.2)
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.5)  # let the checkpoint finish writing, then kill hard
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "tuneforge.json").exists() and not (out / "model.safetensors").exists()
    r = run("predict", str(out), "good")
    assert r.returncode == 2 and "--resume" in r.stderr
    r = run("train", "--resume", "--output", str(out), "--epochs", "1")  # the saved config wins
    assert r.returncode == 0, r.stderr
    assert "Resuming" in r.stderr
    man = json.loads((out / "tuneforge.json").read_text())
    assert man["config"]["epochs"] == 10 and man["training"]["steps"] == 10 * 60
