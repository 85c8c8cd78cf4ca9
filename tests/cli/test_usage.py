"""Usage errors as a user meets them (issue 17 item 8): exit code 2, one line saying what is wrong, no traceback;
``--version`` and shell completion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tuneforge
from tuneforge.cli import main

EXE = [sys.executable, "-m", "tuneforge.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=300,
                          env={"COLUMNS": "100", "PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
                               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


@pytest.mark.parametrize(("args", "says"), [
    (["--nope"], "No such option: --nope; see `tuneforge --help`"),
    (["frobnicate"], "No such command 'frobnicate'; see `tuneforge --help`"),
    (["evaluate"], "Missing argument 'run'; see `tuneforge evaluate --help`"),
    (["predict"], "Missing argument 'run'"),
    (["data", "check", "--bogus", "x.jsonl"], "No such option: --bogus; see `tuneforge data check --help`"),
    (["train", "--epochs", "abc"], "Invalid value for '--epochs'"),
    (["train", "--nope"], "see `tuneforge train --help`"),
    (["predict", "run", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["evaluate", "run", "--data", "d.jsonl", "--batch-size", "0"], "Invalid value for '--batch-size'"),
])
def test_a_usage_error_is_one_line_and_exit_2(args, says):
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("usage error: "), r.stderr
    assert says in lines[0]
    assert r.stdout == ""


@pytest.mark.parametrize("group", [[], ["data"], ["admin"], ["solution"]])
def test_a_group_without_its_command_prints_the_help_and_exit_2(group):
    r = run(*group)
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert "Usage:" in r.stdout and "Commands" in r.stdout
    if not group:
        assert "train" in r.stdout and "--version" in r.stdout


def test_version():
    r = run("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"tuneforge {tuneforge.__version__}"


def test_shell_completion_is_offered(capsys, monkeypatch):
    # --show-completion is a flag that detects the calling shell from the parent processes; under make or CI that
    # may be sh or nothing typer knows, so the test says which shell it is
    import shellingham

    monkeypatch.setattr(shellingham, "detect_shell", lambda *a, **k: ("bash", "/bin/bash"))
    assert main(["--show-completion"]) == 0
    script = capsys.readouterr().out
    assert "complete" in script and "_TUNEFORGE_COMPLETE" in script.upper()


def test_an_error_raised_inside_a_command_is_a_usage_error_too(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TUNEFORGE_DATABASE_URL", f"sqlite:///{tmp_path / 'tf.db'}")
    assert main(["admin", "set-quota", "acme"]) == 2  # typer.BadParameter from the command's body
    err = capsys.readouterr().err
    assert "usage error:" in err and "give at least one quota option" in err


def test_in_process_main_returns_the_code_and_handles_errors(capsys, tmp_path):
    assert main(["data", "check", str(tmp_path / "missing.jsonl")]) == 2
    captured = capsys.readouterr()
    assert "missing.jsonl" in captured.err and "Traceback" not in captured.err
    assert main(["--help"]) == 0
    assert "Commands" in capsys.readouterr().out


def test_help_and_light_commands_do_not_import_the_training_stack():
    """`train` is built from the training config only when it is used: the root help lists it all the same."""
    code = ("import sys, io, contextlib; from tuneforge.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf): main(['--help'])\n"
            "print('train' in buf.getvalue(), 'tuneforge.training' in sys.modules, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split()[-3:] == ["True", "False", "False"], r.stderr


def test_a_task_is_checked_against_the_registry_when_the_command_runs(capsys, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n', encoding="utf-8")
    assert main(["data", "check", str(data), "--task", "summarize"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "summarize" in err and "classification" in err and "Traceback" not in err
