"""Data files as users export them (issue 17 item 11), through the command line: a semicolon CSV from a French
Excel in Windows-1252 is detected and trains; ``--delimiter`` and ``--encoding`` (flags and YAML keys) win over
detection; a wrong ``--encoding`` is a clear message, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.cli import main

# what "CSV (séparateur : point-virgule)" in a French Excel writes: Windows-1252, ';', no BOM, CRLF line ends
EXCEL_ROWS = [
    ("Très bon hôtel, personnel aimable et chambre propre", "pos"),
    ("Chambre trop petite, et très bruyante la nuit", "neg"),
    ("Petit-déjeuner copieux : café, croissants, fruits", "pos"),
    ("Accueil froid – l'enregistrement a duré une heure", "neg"),
    ("Emplacement idéal, à deux minutes de la gare", "pos"),
    ("Prix élevé : 180 € la nuit pour ça, déçu", "neg"),
    ("Größe passt, sehr schönes Zimmer", "pos"),
    ("Frühstück war kalt, Kaffee ungenießbar", "neg"),
]


def excel_csv(path: Path, n: int = 24) -> Path:
    rows = [EXCEL_ROWS[i % len(EXCEL_ROWS)] for i in range(n)]
    text = "text;label\r\n" + "".join(f"{t} ({i});{lab}\r\n" for i, (t, lab) in enumerate(rows))
    path.write_bytes(text.encode("cp1252"))
    return path


BIG5_ROWS = [("這家酒店很好，服務也很周到", "pos"), ("房間太小了，而且隔音很差", "neg"),
             ("早餐種類豐富，味道也不錯", "pos"), ("前台態度冷淡，辦理入住等了很久", "neg")]


def big5_tsv_named_csv(path: Path, n: int = 24) -> Path:
    """Tab-separated Big5 whose texts hold one comma each: a .csv the sniffer reads as comma-separated."""
    rows = [BIG5_ROWS[i % len(BIG5_ROWS)] for i in range(n)]
    text = "text, note\tlabel\n" + "".join(f"{t}, {i}\t{lab}\n" for i, (t, lab) in enumerate(rows))
    path.write_bytes(text.encode("big5"))
    return path


def outputs(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return " ".join((captured.out + captured.err).split())


def test_data_check_reads_a_semicolon_excel_csv_and_names_the_encoding(tmp_path: Path, capsys) -> None:
    path = excel_csv(tmp_path / "avis.csv")
    assert main(["data", "check", str(path)]) == 0
    text = outputs(capsys)
    assert "OK" in text and "24 classification examples (csv)" in text
    assert "warning:" in text and "read as Western European Windows-1252 (cp1252)" in text and "--encoding" in text


def test_train_on_the_excel_csv_warns_and_keeps_the_accents(tmp_path: Path, tiny_bert: Path, capsys) -> None:
    path = excel_csv(tmp_path / "avis.csv")
    out = tmp_path / "run"
    code = main(["train", "--task", "classification", "--data", str(path), "--base-model", str(tiny_bert),
                 "--output", str(out), "--epochs", "1", "--batch-size", "8", "--precision", "fp32"])
    text = outputs(capsys)
    assert code == 0, text
    assert "Windows-1252 (cp1252)" in text and "Traceback" not in text
    manifest = json.loads((out / "tuneforge.json").read_text(encoding="utf-8"))
    assert sorted(manifest["labels"]) == ["neg", "pos"]


def test_delimiter_flag_overrides_the_sniffed_separator(tmp_path: Path, capsys) -> None:
    path = big5_tsv_named_csv(tmp_path / "評論.csv")
    assert main(["data", "check", str(path)]) == 2  # sniffed as comma-separated: no label column
    assert "label" in outputs(capsys)
    assert main(["data", "check", str(path), "--delimiter", "tab", "--text-column", "text, note"]) == 0
    text = outputs(capsys)
    assert "24 classification examples" in text and "Big5" in text  # detected, with the warning


def test_encoding_flag_reads_big5_without_a_guess(tmp_path: Path, capsys) -> None:
    path = big5_tsv_named_csv(tmp_path / "tw.csv")
    args = ["data", "check", str(path), "--delimiter", "tab", "--text-column", "text, note"]
    assert main([*args, "--encoding", "big5"]) == 0
    text = outputs(capsys)
    assert "24 classification examples" in text and "warning" not in text
    assert main(["data", "clean", str(path), "-o", str(tmp_path / "clean.jsonl"), "--delimiter", "tab",
                 "--text-column", "text, note", "--encoding", "big5"]) == 0
    first = json.loads((tmp_path / "clean.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["text"].startswith("這家酒店很好")


@pytest.mark.parametrize(("encoding", "says"), [
    ("utf-8", "tw.csv:2: line 2 cannot be decoded as utf-8"),
    ("klingon", "encoding: unknown encoding 'klingon'"),
])
def test_a_wrong_encoding_is_a_clear_message(tmp_path: Path, capsys, encoding: str, says: str) -> None:
    path = big5_tsv_named_csv(tmp_path / "tw.csv")
    for command in (["data", "check", str(path)], ["data", "split", str(path)],
                    ["train", "--task", "classification", "--data", str(path), "--output", str(tmp_path / "o")]):
        assert main([*command, "--delimiter", "tab", "--encoding", encoding]) == 2
        text = outputs(capsys)
        assert says in text and "Traceback" not in text, (command, text)
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob("tw.*.jsonl"))


def test_yaml_delimiter_and_encoding_reach_training_data_and_eval_data(tmp_path: Path, tiny_bert: Path,
                                                                       capsys) -> None:
    data = big5_tsv_named_csv(tmp_path / "train.csv")
    dev = big5_tsv_named_csv(tmp_path / "dev.csv", n=8)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"task: classification\ndata: {data}\neval_data: {dev}\nbase_model: {tiny_bert}\n"
                   f"output: {tmp_path / 'run'}\ndelimiter: tab\nencoding: big5\ncolumns:\n  text: 'text, note'\n"
                   "epochs: 1\nbatch_size: 8\nprecision: fp32\n", encoding="utf-8")
    code = main(["train", "--config", str(cfg)])
    text = outputs(capsys)
    assert code == 0, text
    assert "warning" not in text  # the encoding was given: nothing was guessed
    manifest = json.loads((tmp_path / "run" / "tuneforge.json").read_text(encoding="utf-8"))
    assert manifest["config"]["delimiter"] == "tab" and manifest["config"]["encoding"] == "big5"
    assert "eval" in manifest["data"] and manifest["metrics"]["dev"]  # the dev file was read with them too
    assert (tmp_path / "run" / "eval-dev" / "metrics.json").is_file()
