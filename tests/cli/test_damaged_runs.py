"""Damaged or edited run folders through the CLI (issue 17 item 9): every command that reads a run refuses it with
one clear message and exit code 2, before anything loads; nothing prints a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tuneforge import runs
from tuneforge.cli import main


def make_run(folder: Path) -> Path:
    """A run folder as `tuneforge train` leaves it, as far as the run-folder contract checks (no real model)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"classifier.weight": torch.zeros(2, 4), "classifier.bias": torch.zeros(2)},
              str(folder / "model.safetensors"))
    runs.write_manifest(folder, {"task": "classification", "labels": ["negative", "positive"], "method": "full",
                                 "config": {"task": "classification", "epochs": 1.0}})
    return folder


def truncate_weights(run: Path) -> None:
    w = run / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-10])


def manifest_bytes(content: bytes) -> Callable[[Path], None]:
    return lambda run: runs.manifest_path(run).write_bytes(content)


def edit_manifest(**changes: object) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        m = json.loads(runs.manifest_path(run).read_text(encoding="utf-8"))
        runs.manifest_path(run).write_text(json.dumps({**m, **changes}), encoding="utf-8")
    return edit


DAMAGE = {
    "truncated weights": (truncate_weights, "model.safetensors is damaged"),
    "weights cut to nothing": (lambda run: (run / "model.safetensors").write_bytes(b""), "is damaged"),
    "empty manifest": (manifest_bytes(b""), "is empty"),
    "invalid JSON": (manifest_bytes(b'{"task": "classification",'), "is not valid JSON"),
    "not UTF-8": (manifest_bytes('{"task": "clé"}'.encode("latin-1")), "is not UTF-8"),
    "a JSON list": (manifest_bytes(b"[1, 2]"), "not an object"),
    "task edited to another task": (edit_manifest(task="ner"), "not the task the model was trained for"),
    "task edited to no task": (edit_manifest(task="summarize"), "is not a known task"),
    "format from the future": (edit_manifest(format_version=99), "format_version 99"),
    "labels edited": (edit_manifest(labels="positive"), "labels must be a list"),
}


def commands(run: Path, tmp: Path) -> dict[str, list[str]]:
    data = tmp / "d.jsonl"
    data.write_text('{"text": "good", "label": "positive"}\n', encoding="utf-8")
    return {"predict": ["predict", str(run), "good"],
            "predict --data": ["predict", str(run), "--data", str(data)],
            "evaluate": ["evaluate", str(run), "--data", str(data)],
            "export": ["export", str(run), "-o", str(tmp / "merged")],
            "ensemble": ["ensemble", str(run), str(run), "-o", str(tmp / "ens")]}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_run_is_refused_by_every_command(tmp_path, capsys, damage):
    run = make_run(tmp_path / "run")
    apply, says = DAMAGE[damage]
    apply(run)
    for name, argv in commands(run, tmp_path).items():
        code = main(argv)
        err = " ".join(capsys.readouterr().err.split())
        assert code == 2, f"{name}: exit {code}"
        assert says in err and err.startswith("error:"), f"{name}: {err}"
        assert "Traceback" not in err
    assert not (tmp_path / "merged").exists() and not (tmp_path / "ens").exists()


def test_the_intact_fixture_is_valid(tmp_path):
    """What each case damages is the only problem with the folder."""
    assert runs.read_manifest(make_run(tmp_path / "run"))["task"] == "classification"


@pytest.mark.parametrize(("damage", "says"), [
    ("empty manifest", "is empty"),
    ("none", "already holds a finished run"),
    ("run-config not JSON", "is not valid JSON"),
    ("run-config without config", "holds no configuration object"),
    ("run-config with a bad config", "epochs"),
    ("nothing there", "holds no interrupted run to resume"),
])
def test_train_resume_refuses_a_damaged_folder(tmp_path, capsys, damage, says):
    run = tmp_path / "run"
    if damage in ("empty manifest", "none"):
        make_run(run)
        if damage == "empty manifest":
            manifest_bytes(b"")(run)
    else:
        run.mkdir()
        if damage == "run-config not JSON":
            (run / runs.RUN_CONFIG).write_text("{", encoding="utf-8")
        elif damage == "run-config without config":
            runs.write_run_config(run, {"started_at": "2026-01-01"})
        elif damage == "run-config with a bad config":
            runs.write_run_config(run, {"config": {"task": "classification", "data": "d.jsonl", "output": str(run),
                                                   "epochs": -1}})
    code = main(["train", "--resume", "--output", str(run)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and says in err and "Traceback" not in err, err
