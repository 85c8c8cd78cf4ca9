"""Readers: every format, line numbers, encodings and the problems they report."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tuneforge.data import FORMATS, detect_format, fingerprint, fingerprint_examples, read_rows
from tuneforge.errors import ConfigError, DataError
from tuneforge.tasks import load_dataset


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))
    return path


def problems_of(exc: pytest.ExceptionInfo[DataError]) -> list:
    return exc.value.problems


# --- JSON Lines ----------------------------------------------------------------------------------------------


def test_malformed_jsonl_names_line_2(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.jsonl", '{"text": "fine", "label": "positive"}\n{"text": "oops" "label": 1}\n')
    with pytest.raises(DataError) as exc:
        read_rows(path)
    (problem,) = problems_of(exc)
    assert problem.line == 2
    assert problem.file == str(path)
    assert problem.message == "line 2 is not valid JSON: Expecting ',' delimiter (column 17)"
    assert f"{path}:2" in str(exc.value)


def test_jsonl_skips_blank_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.jsonl", '\n{"a": 1}\n\n  \n{"a": 2}\r\n{"a": "x\u2028y"}\n')
    fmt, rows = read_rows(path)
    assert fmt == "jsonl"
    assert [r.line for r in rows] == [2, 5, 6]
    assert [r.data["a"] for r in rows] == [1, 2, "x\u2028y"]  # U+2028 is data, not a line break


def test_jsonl_collects_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.jsonl", '{"a": 1}\n[1, 2]\n{"a": 3}\n"text"\n{broken\n')
    with pytest.raises(DataError) as exc:
        read_rows(path)
    problems = problems_of(exc)
    assert [p.line for p in problems] == [2, 4, 5]
    assert "array, not an object" in problems[0].message
    assert "string, not an object" in problems[1].message


def test_pretty_json_saved_as_jsonl_is_one_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", json.dumps([{"text": "a"}, {"text": "b"}], indent=2))
    with pytest.raises(DataError) as exc:
        read_rows(path)
    (problem,) = problems_of(exc)
    assert "not JSON Lines" in problem.message
    assert "--format json" in (problem.hint or "")


# --- CSV / TSV -----------------------------------------------------------------------------------------------


def test_csv_quoted_multiline_field_keeps_record_start_lines(tmp_path: Path) -> None:
    content = 'text,label\n"first line\nsecond line, with a comma",pos\nplain,neg\n\n"say ""hi""",pos\n'
    path = write(tmp_path, "data.csv", content)
    fmt, rows = read_rows(path)
    assert fmt == "csv"
    assert [r.line for r in rows] == [2, 4, 6]
    assert rows[0].data == {"text": "first line\nsecond line, with a comma", "label": "pos"}
    assert rows[2].data["text"] == 'say "hi"'


def test_csv_crlf_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", 'text,label\r\n"a\r\nb",x\r\nc,y\r\n')
    _, rows = read_rows(path)
    assert [r.line for r in rows] == [2, 4]
    assert rows[1].data == {"text": "c", "label": "y"}


def test_csv_wrong_field_count_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", "text,label\ngood,pos\nhello, world,neg\nshort\n")
    with pytest.raises(DataError) as exc:
        read_rows(path)
    problems = problems_of(exc)
    assert [p.line for p in problems] == [3, 4]
    assert "has 3 field(s) but the header (line 1) has 2" in problems[0].message
    assert "quotes" in (problems[0].hint or "")


def test_tsv(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "sentence\tlabel\nit, is good\t1\n\nbad one\t0\n")
    fmt, rows = read_rows(path)
    assert fmt == "tsv"
    assert [(r.line, r.data) for r in rows] == [(2, {"sentence": "it, is good", "label": "1"}),
                                               (4, {"sentence": "bad one", "label": "0"})]


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.csv", b"\xef\xbb\xbftext,label\nhi,x\n")
    _, rows = read_rows(path)
    assert rows[0].data == {"text": "hi", "label": "x"}


def test_duplicate_header_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.csv", "text,text\na,b\n")
    with pytest.raises(DataError, match="names the column 'text' twice"):
        read_rows(path)


# --- CoNLL ---------------------------------------------------------------------------------------------------


def test_conll_with_docstart_and_blank_lines(tmp_path: Path) -> None:
    content = (
        "-DOCSTART- -X- -X- O\n"
        "\n"
        "EU NNP B-NP B-ORG\n"
        "rejects VBZ B-VP O\n"
        "\n"
        "\n"
        "Peter NNP B-NP B-PER\n"
        "Blackburn NNP I-NP I-PER\n"
        "-DOCSTART- -X- -X- O\n"
        "BRUSSELS\tB-LOC\n"
    )
    path = write(tmp_path, "data.conll", content)
    fmt, rows = read_rows(path)
    assert fmt == "conll"
    assert [r.line for r in rows] == [3, 7, 10]
    assert rows[0].data == {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}
    assert rows[1].data == {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]}
    assert rows[2].data == {"tokens": ["BRUSSELS"], "tags": ["B-LOC"]}


def test_conll_single_column_file_has_no_tags(tmp_path: Path) -> None:
    path = write(tmp_path, "input.txt", "我\n爱\n\n北\n京\n")
    _, rows = read_rows(path)
    assert [r.data for r in rows] == [{"tokens": ["我", "爱"]}, {"tokens": ["北", "京"]}]


def test_conll_keeps_full_width_space_token(tmp_path: Path) -> None:
    path = write(tmp_path, "zh.bio", "你 O\n\u3000 O\n好 O\n")
    _, rows = read_rows(path)
    assert rows[0].data["tokens"] == ["你", "\u3000", "好"]


def test_conll_missing_tag_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "data.iob", "EU B-ORG\nrejects\n\nok O\n")
    with pytest.raises(DataError) as exc:
        read_rows(path)
    (problem,) = problems_of(exc)
    assert problem.line == 2
    assert "('rejects') but no tag" in problem.message


# --- JSON and SQuAD ------------------------------------------------------------------------------------------

SQUAD = """{
  "version": "1.1",
  "data": [
    {
      "title": "Normans",
      "paragraphs": [
        {
          "context": "The Normans were in France.",
          "qas": [
            {"id": "q1", "question": "Who was in France?",
             "answers": [{"text": "The Normans", "answer_start": 0}]},
            {
              "question": "Where were they?",
              "id": "q2",
              "answers": [{"text": "France", "answer_start": 20}, {"text": "in France", "answer_start": 17}]
            }
          ]
        }
      ]
    },
    {"title": "Other", "paragraphs": [{"context": "x \\"y\\" z", "qas": [
      {"id": "q3", "question": "what?", "answers": [{"text": "z", "answer_start": 8}]}]}]}
  ]
}
"""


def test_squad_json_is_flattened_with_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "squad.json", SQUAD)
    fmt, rows = read_rows(path)
    assert fmt == "squad"
    assert [r.line for r in rows] == [10, 12, 22]
    assert rows[1].data == {
        "id": "q2", "title": "Normans", "context": "The Normans were in France.", "question": "Where were they?",
        "answers": {"text": ["France", "in France"], "answer_start": [20, 17]},
    }
    assert rows[2].data["context"] == 'x "y" z'


def test_explicit_squad_format_rejects_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, "list.json", '[{"a": 1}]')
    with pytest.raises(DataError, match="not a SQuAD file"):
        read_rows(path, format="squad")


def test_json_list_of_objects_with_line_numbers(tmp_path: Path) -> None:
    content = '[\n  {"text": "a, [b]", "label": "x"},\n\n  {\n    "text": "{c}",\n    "label": "y"\n  }\n]\n'
    path = write(tmp_path, "data.json", content)
    fmt, rows = read_rows(path)
    assert fmt == "json"
    assert [(r.line, r.data["text"]) for r in rows] == [(2, "a, [b]"), (4, "{c}")]


def test_json_object_wrapping_a_list_of_records(tmp_path: Path) -> None:
    path = write(tmp_path, "export.json", '{"version": 2,\n "data": [\n  {"text": "a"},\n  {"text": "b"}\n]}\n')
    fmt, rows = read_rows(path)
    assert fmt == "json"
    assert [(r.line, r.data) for r in rows] == [(3, {"text": "a"}), (4, {"text": "b"})]


def test_csv_with_only_a_header_holds_no_records(tmp_path: Path) -> None:
    path = write(tmp_path, "header.csv", "text,label\n")
    assert read_rows(path) == ("csv", [])
    with pytest.raises(DataError, match="holds no records"):
        load_dataset(path, "classification")


def test_json_file_holding_json_lines_is_read_as_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path, "data.json", '{"text": "a"}\n{"text": "b"}\n')
    fmt, rows = read_rows(path)
    assert fmt == "jsonl"
    assert [r.line for r in rows] == [1, 2]


def test_invalid_json_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "data.json", '[\n  {"text": "a"},\n  {"text": }\n]')
    with pytest.raises(DataError) as exc:
        read_rows(path)
    assert problems_of(exc)[0].line == 3


# --- encodings, missing and empty files ----------------------------------------------------------------------


def test_a_file_whose_encoding_cannot_be_told_is_refused_naming_the_line_and_the_fix(tmp_path: Path) -> None:
    # "啊" in GBK is "가" in Korean: two bytes cannot tell the encodings apart, so nothing is guessed
    path = write(tmp_path, "zh.csv", "text,label\n啊,positive\n".encode("gbk"))
    with pytest.raises(DataError) as exc:
        read_rows(path)
    (problem,) = problems_of(exc)
    assert problem.line == 2
    assert "byte offset 11" in problem.message and "not valid UTF-8" in problem.message
    assert "save the file as UTF-8" in (problem.hint or "") and "-t UTF-8 zh.csv" in (problem.hint or "")
    assert "--encoding" in (problem.hint or "")
    # and with the encoding given, it is read
    assert read_rows(path, encoding="gbk")[1][0].data == {"text": "啊", "label": "positive"}


def test_utf8_with_a_few_damaged_bytes_is_refused_not_read_as_a_legacy_encoding(tmp_path: Path) -> None:
    lines = [f"这家酒店很好，服务也很周到 {i},pos" for i in range(30)]
    content = ("text,label\n" + "\n".join(lines) + "\n").encode()
    content = content.replace("服务".encode(), b"\xff\xfe", 1)  # one broken spot in good UTF-8
    with pytest.raises(DataError) as exc:
        read_rows(write(tmp_path, "damaged.csv", content))
    assert problems_of(exc)[0].line == 2 and "not valid UTF-8" in problems_of(exc)[0].message


def test_central_european_text_is_refused_rather_than_misread_as_windows_1252(tmp_path: Path) -> None:
    content = "text;label\nZażółć gęślą jaźń, świetny hotel;pos\nPokój był mały i głośny;neg\n".encode("cp1250")
    path = write(tmp_path, "pl.csv", content)
    with pytest.raises(DataError) as exc:
        read_rows(path)  # as Windows-1252 it would read "Za¿ó³æ": a wrong guess is worse than a refusal
    assert problems_of(exc)[0].line == 2 and "--encoding" in (problems_of(exc)[0].hint or "")
    assert read_rows(path, encoding="cp1250")[1][0].data["text"] == "Zażółć gęślą jaźń, świetny hotel"


def test_latin1_file_is_read_as_windows_1252_not_mistaken_for_gbk(tmp_path: Path) -> None:
    path = write(tmp_path, "fr.jsonl", '{"text": "ok"}\n{"text": "café crème"}\n'.encode("latin-1"))
    warnings: list = []
    _, rows = read_rows(path, warnings=warnings)
    assert rows[1].data == {"text": "café crème"}
    (warning,) = warnings
    assert "Windows-1252" in warning.message and "cp1252" in warning.message and "GBK" not in str(warning)


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.jsonl", "\n  \n")
    with pytest.raises(DataError, match="the file is empty"):
        read_rows(path)


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_rows(tmp_path / "nope.jsonl")
    assert "file not found" in str(exc.value)
    assert not isinstance(exc.value, FileNotFoundError)
    with pytest.raises(DataError, match="file not found"):
        fingerprint(tmp_path / "nope.jsonl")


def test_format_detection_and_unknown_formats(tmp_path: Path) -> None:
    assert [detect_format(f"x{ext}") for ext in (".jsonl", ".ndjson", ".json", ".CSV", ".tsv", ".txt", ".bio")] == [
        "jsonl", "jsonl", "json", "csv", "tsv", "conll", "conll"]
    assert set(FORMATS) == {"jsonl", "json", "csv", "tsv", "conll", "squad"}
    with pytest.raises(DataError, match="--format"):
        read_rows(write(tmp_path, "data.dat", "x"))
    with pytest.raises(ConfigError, match="unknown format 'xml'"):
        read_rows(write(tmp_path, "data.jsonl", "{}"), format="xml")
    # An explicit format wins over the extension.
    _, rows = read_rows(write(tmp_path, "data.dat", "text\tlabel\na\tb\n"), format="tsv")
    assert rows[0].data == {"text": "a", "label": "b"}


# --- fingerprints --------------------------------------------------------------------------------------------


def test_fingerprint_of_file_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, "a.jsonl", '{"a": 1}\n')
    assert fingerprint(path) == "sha256:" + hashlib.sha256(b'{"a": 1}\n').hexdigest()
    before = fingerprint(path)
    path.write_bytes(b'{"a": 2}\n')
    assert fingerprint(path) != before


def test_fingerprint_of_examples_is_canonical() -> None:
    a: list[dict[str, Any]] = [{"text": "héllo", "label": "x"}, {"text": "b", "label": None}]
    b: list[dict[str, Any]] = [{"label": "x", "text": "héllo"}, {"label": None, "text": "b"}]
    assert fingerprint_examples(a) == fingerprint_examples(b)
    assert fingerprint_examples(a).startswith("sha256:")
    assert fingerprint_examples(a) != fingerprint_examples(a[::-1])
    assert fingerprint_examples(a) != fingerprint_examples([{"text": "héllo", "label": "y"}, a[1]])


# --- hostile and careless input (issue 17) --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["deep.jsonl", "deep.json"])
def test_deeply_nested_json_is_a_data_error_naming_the_line(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, '{"text": "ok", "label": "a"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DataError) as exc:  # not RecursionError
        read_rows(path)
    (problem,) = problems_of(exc)
    assert problem.line == 2 and "more than 64 levels deep" in problem.message
    assert "one JSON object" in (problem.hint or "")


def test_nesting_under_the_recursion_limit_but_over_the_bound_is_refused_too(tmp_path: Path) -> None:
    deep = '{"text": ' + "[" * 500 + '"x"' + "]" * 500 + ', "label": "a"}'
    with pytest.raises(DataError, match="line 1 nests"):
        read_rows(write(tmp_path, "a.jsonl", deep + "\n"))
    doc = '{"data": [\n{"paragraphs": ' + "[" * 300 + "]" * 300 + "}]}"
    with pytest.raises(DataError) as exc:
        read_rows(write(tmp_path, "squad.json", doc))
    assert problems_of(exc)[0].line == 2
    # SQuAD's own nesting (7 levels) is fine
    ok = {"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [
        {"id": "1", "question": "q", "answers": [{"text": "c", "answer_start": 0}]}]}]}]}
    assert read_rows(write(tmp_path, "ok.json", json.dumps(ok)))[0] == "squad"


def test_a_repeated_json_key_is_a_warning_naming_the_key_and_line(tmp_path: Path) -> None:
    warnings: list = []
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "x", "label": "y"}\n')
    _, rows = read_rows(path, warnings=warnings)
    assert rows[1].data == {"text": "b", "label": "y"}  # the last value, as JSON parsers do
    (w,) = warnings
    assert w.line == 2 and w.field == "label" and "more than once" in w.message
    warnings.clear()
    read_rows(write(tmp_path, "d.json", '[{"text": "a", "text": "b", "label": "x"}]'), warnings=warnings)
    assert [w.field for w in warnings] == ["text"]
    ds = load_dataset(path, "classification")
    assert any("more than once" in w.message for w in ds.warnings)


def test_special_files_are_refused_without_hanging(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="named pipe"):  # returns at once: nothing writes to the pipe
        read_rows(fifo)
    with pytest.raises(DataError, match="named pipe"):
        fingerprint(fifo)
    link = tmp_path / "zero.jsonl"
    link.symlink_to("/dev/zero")
    with pytest.raises(DataError, match="character device, not a regular file") as exc:
        read_rows(link)
    assert "regular file" in (problems_of(exc)[0].hint or "")
    with pytest.raises(DataError, match="is a folder"):
        read_rows(tmp_path)


def test_files_over_the_size_cap_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "big.jsonl", '{"text": "a", "label": "b"}\n' * 100)
    with pytest.raises(DataError, match="more than the limit of 1,000 bytes"):
        read_rows(path, max_bytes=1000)
    assert len(read_rows(path, max_bytes=10_000)[1]) == 100


def test_semicolon_csv_from_excel_is_sniffed(tmp_path: Path) -> None:
    path = write(tmp_path, "excel.csv", 'text;label\n"hello, world";pos\nbad, very bad;neg\n3,5 stars;pos\n')
    _, rows = read_rows(path)
    assert [r.data for r in rows] == [{"text": "hello, world", "label": "pos"},
                                      {"text": "bad, very bad", "label": "neg"}, {"text": "3,5 stars", "label": "pos"}]
    # a comma CSV whose texts hold semicolons stays a comma CSV
    _, rows = read_rows(write(tmp_path, "c.csv", "text,label\na; b,pos\nc; d,neg\n"))
    assert rows[0].data == {"text": "a; b", "label": "pos"}
    # pipes, and a TSV that is really semicolon-separated
    assert read_rows(write(tmp_path, "p.csv", "text|label\na|b\n"))[1][0].data == {"text": "a", "label": "b"}
    assert read_rows(write(tmp_path, "s.tsv", "text;label\na;b\n"))[1][0].data == {"text": "a", "label": "b"}


def test_an_explicit_delimiter_wins_and_a_bad_one_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "text;label\na,b;c\n")
    with pytest.raises(DataError, match="comma-separated"):  # forced to commas: 1 field in the header, 2 below
        read_rows(path, delimiter=",")
    assert read_rows(path, delimiter=";")[1][0].data == {"text": "a,b", "label": "c"}
    assert read_rows(write(tmp_path, "t.csv", "text\tlabel\na\tb\n"), delimiter="tab")[1][0].data == {
        "text": "a", "label": "b"}
    for bad in ("", ";;", '"', "a"):
        with pytest.raises(ConfigError, match="delimiter"):
            read_rows(path, delimiter=bad)


def test_field_count_errors_name_the_separator_read(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_rows(write(tmp_path, "x.csv", "text;label\na;b;c\nd;e\n"))
    assert "semicolon-separated" in problems_of(exc)[0].message


REVIEWS = {
    "big5": ["這家酒店很好，服務也很周到。", "房間太小了，而且隔音很差。", "早餐種類豐富，味道也不錯。",
             "前台態度冷淡，辦理入住等了很久。", "位置方便，離捷運站只要五分鐘。", "價格偏貴，不值這個錢。"],
    "shift_jis": ["このホテルはとても良かったです。", "部屋が狭くて、夜はうるさかった。",
                  "朝食の種類が豊富でおいしい。", "フロントの対応が遅くて残念でした。", "駅から近くて便利です。",
                  "値段の割に満足できなかった。"],
    "gbk": ["这家酒店很好，服务也很周到。", "房间太小了，而且隔音很差。", "早餐种类丰富，味道也不错。",
            "前台态度冷淡，办理入住等了很久。", "位置方便，离地铁站只要五分钟。", "价格偏贵，不值这个钱。"],
    "cp1252": ["Très bon hôtel, personnel aimable", "Chambre trop petite et bruyante", "Petit-déjeuner copieux",
               "Accueil froid – enregistrement lent", "Emplacement idéal près de la gare", "Größe passt, schön"],
}


def reviews(encoding: str, kind: str, n: int = 36) -> tuple[bytes, list[str]]:
    texts = [f"{REVIEWS[encoding][i % 6]} {i}" for i in range(n)]
    labels = ["pos" if i % 3 else "neg" for i in range(n)]
    if kind == "csv":
        sep = ";" if encoding == "cp1252" else ","  # Excel in France/Germany writes ;
        text = f"text{sep}label\n" + "".join(f"{t}{sep}{lab}\n" for t, lab in zip(texts, labels, strict=True))
    else:
        text = "".join(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n"
                       for t, lab in zip(texts, labels, strict=True))
    return text.encode(encoding), texts


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
@pytest.mark.parametrize(("encoding", "named"), [("big5", "Big5"), ("shift_jis", "Shift-JIS"),
                                                 ("gbk", "GBK"), ("cp1252", "Windows-1252")])
def test_legacy_encodings_are_detected_read_and_named_in_a_warning(tmp_path: Path, encoding: str, named: str,
                                                                    kind: str) -> None:
    content, texts = reviews(encoding, kind)
    path = write(tmp_path, f"legacy.{kind}", content)
    warnings: list = []
    _, rows = read_rows(path, warnings=warnings)
    assert [r.data["text"] for r in rows] == texts
    assert [r.line for r in rows] == list(range(2 if kind == "csv" else 1, len(texts) + (2 if kind == "csv" else 1)))
    (warning,) = warnings
    assert named in warning.message and "not UTF-8" in warning.message and "--encoding" in (warning.hint or "")
    # the task reader carries the warning into the dataset (shown by `data check` and `train`)
    ds = load_dataset(path, "classification", min_classes=2)
    assert ds.examples[0]["text"] == texts[0] and any(named in w.message for w in ds.warnings)


def test_an_explicit_encoding_wins_over_detection(tmp_path: Path) -> None:
    content, texts = reviews("gbk", "csv")
    path = write(tmp_path, "zh.csv", content)
    warnings: list = []
    assert [r.data["text"] for r in read_rows(path, encoding="gb18030", warnings=warnings)[1]] == texts
    assert warnings == []  # nothing was guessed
    fr, _ = reviews("cp1252", "csv")
    _, rows = read_rows(write(tmp_path, "fr.csv", fr), encoding="cp1250")  # what the user says, even if odd
    assert rows[0].data["text"].startswith("Trčs")
    with pytest.raises(DataError) as exc:
        read_rows(path, encoding="utf-8")
    assert "cannot be decoded as utf-8" in problems_of(exc)[0].message and problems_of(exc)[0].line == 2
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        read_rows(path, encoding="klingon")


def test_detection_can_be_turned_off_for_formats_that_must_be_utf8(tmp_path: Path) -> None:
    content, _ = reviews("big5", "jsonl")
    with pytest.raises(DataError) as exc:
        read_rows(write(tmp_path, "tw.jsonl", content), detect_encoding=False)
    assert "not valid UTF-8" in problems_of(exc)[0].message and "BIG5" in (problems_of(exc)[0].hint or "")


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_utf16_without_a_bom_is_read_for_cjk_text_too(tmp_path: Path, codec: str, kind: str) -> None:
    content, texts = reviews("gbk", kind)
    path = write(tmp_path, f"u16.{kind}", content.decode("gbk").encode(codec))
    assert [r.data["text"] for r in read_rows(path)[1]] == texts


def test_utf16_with_or_without_a_bom_is_read(tmp_path: Path) -> None:
    text = "text\tlabel\ncafé crème\tpos\n训练\tneg\n"
    for name, content in (("le.tsv", text.encode("utf-16")), ("nobom.tsv", text.encode("utf-16-le")),
                          ("be.tsv", text.encode("utf-16-be")), ("sig.tsv", text.encode("utf-8-sig"))):
        _, rows = read_rows(write(tmp_path, name, content))
        assert [r.data["text"] for r in rows] == ["café crème", "训练"], name


@pytest.mark.parametrize(("content", "what"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "a PNG image"),
    (b"PK\x03\x04" + b"\x00" * 100, "ZIP archive"),
    (b"%PDF-1.7\n...", "a PDF document"),
    (b"\x00" * 1000, "a binary file"),
    (b'{"text": "a\x00b", "label": "x"}\n', "NUL byte at byte offset 11"),
])
def test_binary_files_are_not_text(tmp_path: Path, content: bytes, what: str) -> None:
    with pytest.raises(DataError) as exc:
        read_rows(write(tmp_path, "data.jsonl", content))
    (problem,) = problems_of(exc)
    assert problem.message.startswith("this is not text") and what in problem.message and problem.hint


def test_a_missing_file_says_so_without_suggesting_column_mapping(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_dataset(tmp_path / "nope.csv", "classification")
    assert "file not found" in str(exc.value) and "column" not in str(exc.value).lower()
