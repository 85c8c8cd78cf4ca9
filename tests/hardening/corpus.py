"""The bad-input corpus (issue 17): files a hostile or careless user gives TuneForge, across every reader (CSV,
TSV, JSON Lines, JSON, SQuAD, CoNLL) and task, each with what the answer must name so the user knows what to fix.

``build(folder)`` writes them and returns the cases. Every case must be refused with a data or config error (or,
``warn``, read with a warning) whose text holds each of ``names`` — never a traceback, never a 500. ``loose``
cases are defects other parts of TuneForge decide on (label spelling, label length): they must not crash, and
when refused the message must name the file. ``special`` files (a pipe, a device, a folder, a missing path) cannot
be uploaded, so they go through the readers and the CLI only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Case", "build"]


@dataclass(frozen=True)
class Case:
    name: str  # the file name (its extension picks the reader)
    task: str
    names: tuple[str, ...]  # what the error text must contain (case-insensitive; "line N" also as "FILE:N")
    warn: bool = False  # accepted, with a warning holding ``names``
    loose: bool = False  # must not crash; the rules are someone else's
    lenient: bool = False  # QA offsets: `data check` (as train) repairs or drops them with a warning (issue 23)
    special: bool = False  # not a regular file: readers and CLI only
    path: Path = field(default=Path(), compare=False)


def _j(rows: list[object]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


GOOD = [{"text": "a good movie", "label": "pos"}, {"text": "a bad movie", "label": "neg"},
        {"text": "great fun", "label": "pos"}, {"text": "so boring", "label": "neg"}]
NER = [{"tokens": ["john", "lives", "in", "paris"], "tags": ["B-PER", "O", "O", "B-LOC"]},
       {"tokens": ["mary", "works"], "tags": ["B-PER", "O"]}]
CTX = "paris is the capital of france."
QA = [{"id": "q1", "question": "what is the capital?", "context": CTX, "answers": {"text": ["paris"],
                                                                                  "answer_start": [0]}}]


def _squad(**para: object) -> bytes:
    p = {"context": CTX, "qas": [{"id": "1", "question": "capital?", "answers": [{"text": "paris",
                                                                                  "answer_start": 0}]}]}
    p.update(para)
    return json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [p]}]}, ensure_ascii=False).encode()


DEEP = ("[" * 100_000 + "]" * 100_000 + "\n").encode()  # 200 KB of nesting: the RecursionError of before
ZH = "这家酒店很好，服务也很周到，我们下次还会再来。"
TW = "這家酒店很好，服務也很周到，我們下次還會再來。"
JA = "このホテルはとても良かったです。また来ます。"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
XLSX = b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 200 + b"[Content_Types].xml"


def _cases() -> list[tuple[str, str, bytes, tuple[str, ...], dict[str, bool]]]:
    c: list[tuple[str, str, bytes, tuple[str, ...], dict[str, bool]]] = []

    def add(name: str, task: str, content: bytes, *names: str, **flags: bool) -> None:
        c.append((name, task, content, names, flags))

    cls, ner, qa = "classification", "ner", "qa"
    # --- CSV
    add("unquoted-comma.csv", cls, b"text,label\na good movie,pos\nbad, really bad,neg\nfine,pos\n", "line 3",
        "double quotes")
    add("excel-semicolon-ragged.csv", cls, b"text;label\ngood;pos\nbad;neg;extra\n", "line 3", "semicolon")
    add("duplicate-header.csv", cls, b"text,text,label\na,b,pos\nc,d,neg\n", "twice")
    add("header-only.csv", cls, b"text,label\n", "no records")
    add("empty.csv", cls, b"", "empty")
    add("blank-lines.csv", cls, b"\n \n\t\n", "empty")
    # a legacy encoding told with confidence is read, with a warning naming it; one that cannot be told is refused
    two = ("pos", "neg")
    add("gbk.csv", cls, ("text,label\n" + "".join(f"{ZH}{i},{two[i % 2]}\n" for i in range(4))).encode("gbk"),
        "not UTF-8", "GBK", "--encoding", warn=True)
    add("big5.csv", cls, ("text,label\n" + "".join(f"{TW}{i},{two[i % 2]}\n" for i in range(4))).encode("big5"),
        "Big5", "--encoding", warn=True)
    add("shift-jis.csv", cls, ("text,label\n" + "".join(f"{JA}{i},{two[i % 2]}\n" for i in range(4)))
        .encode("shift_jis"), "Shift-JIS", "--encoding", warn=True)
    add("latin1.csv", cls, "text,label\ncafé crème,pos\nthé,neg\n".encode("latin-1"), "Windows-1252", warn=True)
    add("ambiguous-encoding.csv", cls, "text,label\n啊,pos\n哦,neg\n".encode("gbk"), "line 2", "-t UTF-8",
        "--encoding")
    add("png-named.csv", cls, PNG, "not text", "PNG")
    add("excel-workbook.csv", cls, XLSX, "not text", "save it as CSV")
    add("nul-only.csv", cls, b"\x00" * 4096, "not text")
    add("no-label-column.csv", cls, b"sentence_text,cls\na,pos\nb,neg\n", "--text-column")
    add("empty-texts.csv", cls, b"text,label\n,pos\n   ,neg\ngood,pos\nbad,neg\n", "line 2")
    add("one-class.csv", cls, b"text,label\na,pos\nb,pos\nc,pos\n", "distinct label")
    add("unclosed-quote.csv", cls, b'text,label\n"never closed,pos\nb,neg\n', "line 2")
    add("label-case.csv", cls, b"text,label\na,Pos\nb,pos\nc,POS\nd,neg\n", "pos", loose=True)
    add("huge-label.csv", cls, b"text,label\na," + b"L" * 100_000 + b"\nb,neg\n", "label", loose=True)
    add("nul-in-text.csv", cls, b"text,label\nab\x00cd,pos\nx,neg\n", "not text", "line 2")
    # --- TSV
    add("ragged.tsv", cls, b"text\tlabel\na\tpos\nb\tneg\textra\n", "line 3")
    add("missing-labels.tsv", cls, b"text\tlabel\r\na\t\r\nb\t\r\n", "label")
    add("utf16-bom-broken.tsv", cls, b"\xff\xfe" + "text\tlabel\n".encode("utf-16-le") + b"\x00\xd8", "utf-8")
    add("no-text-column.tsv", cls, b"id\tlabel\n1\tpos\n2\tneg\n", "--text-column")
    add("binary.tsv", cls, bytes(range(256)) * 8, "not text")
    # --- JSON Lines
    add("malformed.jsonl", cls, b'{"text": "a", "label": "pos"}\n{"text": "b", "label": \n', "line 2", "json")
    add("deep.jsonl", cls, DEEP, "line 1", "levels deep")
    add("deep-value.jsonl", cls, _j(GOOD) + b'{"text": ' + b"[" * 500 + b'"x"' + b"]" * 500 + b', "label": "a"}\n',
        "line 5", "levels deep")
    add("array-lines.jsonl", cls, b'["a", "pos"]\n["b", "neg"]\n', "line 1", "not an object")
    add("pretty.jsonl", cls, json.dumps(GOOD, indent=2).encode(), "one json document", "--format json")
    add("text-number.jsonl", cls, _j([{"text": 5, "label": "pos"}, *GOOD]), "line 1", "text")
    add("text-list.jsonl", cls, _j([{"text": ["a", "b"], "label": "pos"}, *GOOD]), "line 1", "text")
    add("label-null.jsonl", cls, _j([*GOOD, {"text": "x", "label": None}]), "line 5", "label")
    add("duplicate-keys.jsonl", cls, _j(GOOD) + b'{"text": "x", "label": "pos", "label": "neg"}\n', "line 5",
        "more than once", warn=True)
    add("nul-text.jsonl", cls, _j(GOOD) + b'{"text": "a\\u0000", "label": "pos"}\n' + b'{"text": "\x00\x00"}\n',
        "not text", "line 6")
    add("truncated.jsonl", cls, _j(GOOD) + b'{"text": "cut off in the mid', "line 5")
    add("missing-text.jsonl", cls, _j([{"label": "pos"}, {"label": "neg"}]), "text")
    add("one-class.jsonl", cls, _j([{"text": "a", "label": "x"}, {"text": "b", "label": "x"}]), "distinct label")
    add("control-only.jsonl", cls, _j([*GOOD, {"text": "\u0001\u0002\u0003", "label": "pos"}]), "line 5")
    add("strings.jsonl", cls, b'"a good movie"\n"a bad movie"\n', "line 1", "not an object")
    add("empty-objects.jsonl", cls, b"{}\n{}\n", "text")
    add("label-case.jsonl", cls, _j([{"text": "a", "label": "Pos"}, {"text": "b", "label": "pos"},
                                     {"text": "c", "label": "POS"}, {"text": "d", "label": "neg"}]), "pos",
        loose=True)
    add("ner-length-mismatch.jsonl", ner, _j([*NER, {"tokens": ["a", "b"], "tags": ["O"]}]), "line 3")
    add("ner-tokens-string.jsonl", ner, _j([*NER, {"tokens": "john lives here", "tags": ["O"]}]), "line 3",
        "tags")
    add("ner-bad-tag.jsonl", ner, _j([*NER, {"tokens": ["a"], "tags": ["X-PER"]}]), "line 3", "X-PER")
    add("qa-missing-context.jsonl", qa, _j([*QA, {"id": "q2", "question": "?", "answers": QA[0]["answers"]}]),
        "line 2", "context")
    add("qa-answer-elsewhere.jsonl", qa, _j([*QA, {**QA[0], "id": "q2", "answers": {"text": ["berlin"],
                                                                                    "answer_start": [0]}}]),
        "line 2", "berlin", lenient=True)
    add("qa-deep.jsonl", qa, DEEP, "levels deep")
    # --- JSON
    add("object.json", cls, b'{"rows": [{"text": "a", "label": "b"}]}', "expected a json array", "'rows'")
    add("scalar.json", cls, b"42", "found a json number")
    add("not-objects.json", cls, b'["a", "b", 3]', "item 0", "not an object")
    add("trailing-comma.json", cls, b'[{"text": "a", "label": "pos"},\n]\n', "line 2", "json")
    add("deep.json", cls, DEEP, "line 1", "levels deep")
    add("data-string.json", cls, b'{"data": "x"}', '"data"')
    add("duplicate-keys.json", cls, json.dumps(GOOD)[:-1].encode() + b', {"text": "a", "text": "b", "label": "pos"}]',
        "'text'", "more than once", warn=True)
    add("binary.json", cls, PNG, "not text")
    # --- SQuAD (qa)
    add("squad-paragraphs.json", qa, b'{"data": [{"title": "t", "paragraphs": "oops"}]}', "paragraphs")
    add("squad-no-qas.json", qa, json.dumps({"data": [{"title": "t", "paragraphs": [{"context": CTX}]}]}).encode(),
        "qas")
    add("squad-wrong-start.json", qa, _squad(qas=[{"id": "1", "question": "capital?",
                                                   "answers": [{"text": "paris", "answer_start": 7}]}]), "paris",
        lenient=True)
    add("squad-not-in-context.json", qa, _squad(qas=[{"id": "1", "question": "capital?",
                                                      "answers": [{"text": "rome", "answer_start": 0}]}]), "rome")
    add("squad-no-question.json", qa, _squad(qas=[{"id": "1", "answers": [{"text": "paris", "answer_start": 0}]}]),
        "question")
    add("squad-article-string.json", qa, b'{"data": ["article"]}', "item 0", "not an object")
    add("squad-deep.json", qa, b'{"data": [{"paragraphs": ' + b"[" * 2000 + b"]" * 2000 + b"}]}", "levels deep")
    add("squad-gbk.json", qa, _squad(context=ZH * 3, qas=[{"id": "1", "question": "什么很好？", "answers": [
        {"text": "酒店", "answer_start": 2}]}]).decode().encode("gbk"), "not UTF-8", "GBK", warn=True)
    # --- CoNLL (ner)
    add("token-without-tag.conll", ner, b"john B-PER\nlives O\nparis\n\nmary B-PER\n", "line 3", "no tag")
    add("i-without-b.conll", ner, b"john I-PER\nlives O\n\nmary B-PER\nworks O\n", "line 1", "I-PER")
    add("bad-scheme.conll", ner, b"john PERSON\nlives O\n\nmary B-PER\n", "line 1", "PERSON")
    add("binary.conll", ner, PNG, "not text")
    add("gbk.conll", ner, "张 B-PER\n三 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n".encode("gbk"), "line 1", "GBK")
    add("empty.conll", ner, b"\n\n", "empty")
    add("docstart-only.conll", ner, b"-DOCSTART- O\n\n-DOCSTART- O\n", "no records")
    add("utf16-nobom.conll", ner, "john B-PER\nlives\n".encode("utf-16-le"), "line 2", "no tag")
    return c


def build(folder: Path) -> list[Case]:
    """Write the corpus under ``folder``; returns its cases (regular files first, then the special ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    for name, task, content, names, flags in _cases():
        path = folder / name
        path.write_bytes(content)
        cases.append(Case(name, task, names, path=path, **flags))
    pipe = folder / "named-pipe.jsonl"
    os.mkfifo(pipe)
    zero = folder / "dev-zero-link.jsonl"
    zero.symlink_to("/dev/zero")
    (folder / "a-folder.jsonl").mkdir()
    cases += [Case("named-pipe.jsonl", "classification", ("named pipe", "regular file"), special=True, path=pipe),
              Case("dev-zero-link.jsonl", "classification", ("character device", "regular file"), special=True,
                   path=zero),
              Case("a-folder.jsonl", "ner", ("is a folder",), special=True, path=folder / "a-folder.jsonl"),
              Case("missing.csv", "qa", ("file not found",), special=True, path=folder / "missing.csv")]
    return cases
