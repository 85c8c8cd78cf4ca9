"""`tuneforge data import` (issue 23): Parquet, Excel, save_to_disk folders and the Hugging Face hub cache layout
to JSONL, offline, with field mapping and errors that name the file and field."""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tuneforge.cli import main
from tuneforge.data.importers import import_records
from tuneforge.errors import DataError

datasets = pytest.importorskip("datasets")

ROWS = {"content": ["great film", "dull plot", "loved it"], "label": [1, 0, 1]}
FEATURES = {"content": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}


def dataset(rows: dict[str, list[Any]] | None = None) -> Any:
    return datasets.Dataset.from_dict(rows or ROWS, features=datasets.Features(FEATURES))


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_parquet_with_class_labels_and_field_mapping(tmp_path: Path) -> None:
    src = tmp_path / "reviews.parquet"
    dataset().to_parquet(str(src))
    result = import_records(src, tmp_path / "out.jsonl", fields={"text": "content"})
    assert records(tmp_path / "out.jsonl") == [{"text": "great film", "label": "positive"},
                                               {"text": "dull plot", "label": "negative"},
                                               {"text": "loved it", "label": "positive"}]
    assert result.records == 3 and result.kind == "file" and result.class_labels == {
        "label": ["negative", "positive"]}
    with pytest.raises(DataError) as e:
        import_records(src, tmp_path / "bad.jsonl", fields={"text": "body"})
    (problem,) = e.value.problems
    assert problem.file == str(src) and problem.field == "body" and "content, label" in problem.message
    assert not (tmp_path / "bad.jsonl").exists()


def test_excel_header_dates_and_sheets(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "notes"
    ws.append(["ignored"])
    data = wb.create_sheet("tickets")
    data.append(["Ticket text", "Queue", "Opened"])
    data.append(["printer on fire", "it", dt.datetime(2024, 5, 1, 9, 30)])
    data.append([None, None, None])  # an empty row is skipped
    data.append(["refund please", "billing", None])
    src = tmp_path / "tickets.xlsx"
    wb.save(src)
    import_records(src, tmp_path / "t.jsonl", sheet="tickets", fields={"text": "Ticket text", "label": "Queue"})
    assert records(tmp_path / "t.jsonl") == [
        {"text": "printer on fire", "label": "it", "Opened": "2024-05-01T09:30:00"},
        {"text": "refund please", "label": "billing", "Opened": None}]
    with pytest.raises(DataError) as e:
        import_records(src, tmp_path / "t.jsonl", sheet="missing")
    assert "tickets" in str(e.value)
    data.cell(row=1, column=2).value = None
    wb.save(src)
    with pytest.raises(DataError) as e:
        import_records(src, tmp_path / "t2.jsonl", sheet="tickets")
    assert e.value.problems[0].line == 1 and "column B has no name" in e.value.problems[0].message


def test_save_to_disk_dataset_and_dataset_dict(tmp_path: Path) -> None:
    dataset().save_to_disk(str(tmp_path / "one"))
    import_records(tmp_path / "one", tmp_path / "one.jsonl")
    assert records(tmp_path / "one.jsonl")[0] == {"content": "great film", "label": "positive"}
    test_split = dataset({"content": ["meh"], "label": [0]})
    datasets.DatasetDict({"train": dataset(), "test": test_split}).save_to_disk(str(tmp_path / "dd"))
    result = import_records(tmp_path / "dd", tmp_path / "train.jsonl")
    assert result.split == "train" and result.records == 3 and result.splits == ["train", "test"]
    import_records(tmp_path / "dd", tmp_path / "test.jsonl", split="test")
    assert records(tmp_path / "test.jsonl") == [{"content": "meh", "label": "negative"}]
    with pytest.raises(DataError) as e:
        import_records(tmp_path / "dd", tmp_path / "x.jsonl", split="validation")
    assert "train, test" in str(e.value)


def hub_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "hub"
    repo = cache / "datasets--acme--reviews"
    sha = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / sha / "data"
    snap.mkdir(parents=True)
    dataset().to_parquet(str(snap / "train-00000-of-00001.parquet"))
    (snap / "test-00000-of-00001.jsonl").write_text('{"content": "fine", "label": 1}\n', encoding="utf-8")
    (repo / "snapshots" / sha / "README.md").write_text("# reviews\n", encoding="utf-8")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha, encoding="utf-8")
    return cache


def test_hub_cache_layout_offline(tmp_path: Path, monkeypatch, capsys) -> None:
    cache = hub_cache(tmp_path)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the import tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    out = tmp_path / "r.jsonl"
    code = main(["data", "import", "acme/reviews", "--cache-dir", str(cache), "-o", str(out), "--text-field",
                 "content"])
    assert code == 0, capsys.readouterr().err
    assert records(out)[1] == {"text": "dull plot", "label": "negative"}
    printed = " ".join(capsys.readouterr().out.split())
    assert "3 record(s)" in printed and "split train (of test, train)" in printed
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    result = import_records(cache / "datasets--acme--reviews", tmp_path / "t.jsonl", split="test")
    assert result.split == "test" and records(tmp_path / "t.jsonl") == [{"content": "fine", "label": 1}]
    import_records("acme/reviews", tmp_path / "t2.jsonl", split="test")  # found through $HF_HUB_CACHE
    assert records(tmp_path / "t2.jsonl") == records(tmp_path / "t.jsonl")


def test_clear_errors(tmp_path: Path, capsys) -> None:
    code = main(["data", "import", "nobody/nothing", "--cache-dir", str(tmp_path), "-o", str(tmp_path / "x.jsonl")])
    assert code == 2 and "not in the hub cache" in capsys.readouterr().err
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(DataError) as e:
        import_records(tmp_path / "old.xls", tmp_path / "x.jsonl")
    assert e.value.problems[0].hint == "save the sheet as .xlsx"
    assert main(["data", "import", str(tmp_path / "old.xls"), "-o", str(tmp_path / "x.jsonl"),
                 "--field", "oops"]) == 2
    assert "NEW=OLD" in capsys.readouterr().err
