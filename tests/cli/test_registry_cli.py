"""``tuneforge registry``: promote a run folder, list, move aliases, roll back, delete, history — offline."""

from __future__ import annotations

import json

import pytest

from tests.store.test_registry import fake_run
from tuneforge.cli import main
from tuneforge.store.registry import local_registry


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_REGISTRY_DIR", str(tmp_path / "reg"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "reg"


def test_promote_list_rollback(root, tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "a", "label": "x"}\n')
    assert main(["registry", "promote", "sst", str(fake_run(tmp_path / "r1", accuracy=0.71, train=train)),
                 "--alias", "production", "--reason", "first model"]) == 0
    assert main(["registry", "promote", "sst", str(fake_run(tmp_path / "r2", accuracy=0.82))]) == 0
    capsys.readouterr()
    assert main(["registry", "list", "sst"]) == 0
    listing = capsys.readouterr().out
    rows = [line for line in listing.splitlines() if "0.7100" in line or "0.8200" in line]
    assert len(rows) == 2 and "production" in rows[1] and "production" not in rows[0]
    assert rows[0].split("│")[1].strip() == "1" and rows[1].split("│")[1].strip() == "2"

    assert main(["registry", "rollback", "sst", "--reason", "worse on tweets"]) == 0
    reg = local_registry(root)
    assert reg.get("sst").version == 1
    capsys.readouterr()
    assert main(["registry", "rollback", "sst"]) == 0  # production has not moved since: it stays, with a note
    assert "nothing to roll back" in capsys.readouterr().err and reg.get("sst").version == 1
    assert main(["registry", "rollback", "sst", "--alias", "nope"]) == 2  # no such alias: an error
    kept = reg.get("sst").train_data  # the training file the run's manifest names, kept for replay
    assert kept is not None and kept.read_text() == train.read_text()
    assert reg.get("sst", 2).train_data is None  # its manifest names a file that does not exist
    assert main(["registry", "promote", "sst", "2", "--alias", "candidate"]) == 0
    assert reg.get("sst", "candidate").version == 2
    capsys.readouterr()
    assert main(["registry", "path", "sst@candidate"]) == 0
    assert capsys.readouterr().out.strip() == str(reg.get("sst", 2).run_dir)

    capsys.readouterr()
    assert main(["registry", "history", "sst", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in rows] == ["register", "set_alias", "register", "set_alias", "rollback",
                                          "set_alias"]  # the rollbacks that changed nothing are not recorded
    assert rows[4]["reason"] == "worse on tweets" and rows[4]["actor"]


def test_delete_refused_while_aliased_and_alias_command(root, tmp_path, capsys):
    assert main(["registry", "promote", "sst", str(fake_run(tmp_path / "r1", accuracy=0.5))]) == 0
    capsys.readouterr()
    assert main(["registry", "delete", "sst", "1"]) == 2
    assert "production" in capsys.readouterr().err
    assert main(["registry", "alias", "sst", "production", "--remove"]) == 0
    assert main(["registry", "delete", "sst", "1"]) == 0
    capsys.readouterr()
    assert main(["registry", "list", "sst", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert local_registry(root).versions("sst") == []


def test_unknown_name_and_bad_target(root, tmp_path, capsys):
    assert main(["registry", "list", "nope"]) == 2
    assert "No model named 'nope'" in capsys.readouterr().err
    assert main(["registry", "promote", "sst", str(tmp_path / "missing")]) == 2
    assert "neither a run folder nor a version" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["registry", "promote", "sst", str(tmp_path / "empty")]) == 2
    assert "not a finished run folder" in capsys.readouterr().err


def test_the_cli_default_alias_is_the_registry_s_production():
    # the CLI spells the default alias itself so that importing it does not import the store (SQLAlchemy)
    from tuneforge.cli import registry as cli_registry
    from tuneforge.store.registry import PRODUCTION

    assert cli_registry.PRODUCTION == PRODUCTION
