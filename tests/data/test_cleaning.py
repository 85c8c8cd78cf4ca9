"""Cleaning: text normalization, removal reasons, label merging, and the near-duplicate search."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tuneforge.data import CleanOptions, Dataset, clean_text, near_duplicates
from tuneforge.errors import ConfigError
from tuneforge.tasks import clean_dataset, load_dataset

LONG_EN = ("The film opens with a long, quiet shot of the harbour at dawn, and from there it never loses its nerve: "
           "the actors are restrained, the score is spare, and the ending lands without a single cheap trick.")
LONG_ZH = ("这家酒店的位置非常方便，离地铁站只有五分钟的路程，周围有很多餐馆和商店。房间虽然不大，但是打扫得很干净，"
           "床也很舒服。前台的服务员态度热情，早餐的种类也比较丰富，总体来说性价比很高，下次出差还会选择这里。")


def dataset(tmp_path: Path, rows: list[dict[str, Any]], task: str = "classification", **kwargs: Any) -> Dataset:
    path = tmp_path / f"{task}-{len(list(tmp_path.iterdir()))}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return load_dataset(path, task, **kwargs)


def texts(ds: Dataset) -> list[str]:
    return [ex["text"] for ex in ds.examples]


# --- text normalization --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "clean"), [
    ("<div>Great&nbsp;movie</div><div>Loved it &amp; more</div>", "Great movie Loved it & more"),
    ("<style>p { color: red }</style>Fine<script>alert('x')</script>", "Fine"),
    ("a<br/>b", "a b"),
    ("un<b>believ</b>able<!-- note -->", "unbelievable"),
    ("你好<br>世界<p>再见</p>", "你好世界再见"),  # no space is ever put between Chinese characters
    ("5 &lt;b&gt; 3", "5 <b> 3"),  # an escaped tag is text, not markup
    ("x < y and y > z", "x < y and y > z"),
])
def test_html_is_stripped(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_nfkc_and_whitespace_with_full_width_chinese() -> None:
    assert clean_text("ＨＥＬＬＯ，世界！　１２３") == "HELLO,世界! 123"
    assert clean_text("这部电影很好看。") == "这部电影很好看。"
    assert clean_text("  这  部\t\n电影\u200b好 ") == "这 部 电影好"  # runs collapse, nothing inserted
    assert clean_text("Ｂｉｇ", CleanOptions(normalize_unicode=False)) == "Ｂｉｇ"
    assert clean_text("Hello World", CleanOptions(lowercase=True)) == "hello world"


# --- classification ------------------------------------------------------------------------------------------


def test_duplicates_after_normalization_keep_the_first(tmp_path: Path) -> None:
    rows = [{"text": "Good  movie", "label": "pos"}, {"text": "Ｇｏｏｄ movie", "label": "pos"},
            {"text": "<i>Good</i> movie", "label": "pos"}, {"text": "Bad movie", "label": "neg"}]
    ds = dataset(tmp_path, rows)
    cleaned, report = clean_dataset(ds)
    assert texts(cleaned) == ["Good movie", "Bad movie"]
    assert cleaned.lines == [1, 4]
    assert report.kept == 2
    assert report.changed == 3
    assert report.removed == [(2, "duplicate", "same as line 1"), (3, "duplicate", "same as line 1")]
    assert report.counts() == {"duplicate": 2}
    assert texts(ds) == ["Good  movie", "Ｇｏｏｄ movie", "<i>Good</i> movie", "Bad movie"]  # input untouched


def test_label_conflicts_drop_every_copy(tmp_path: Path) -> None:
    rows = [{"text": "It was fine", "label": "pos"}, {"text": "It was  fine", "label": "neg"},
            {"text": "It was fine", "label": "pos"}, {"text": "Clear winner", "label": "pos"}]
    cleaned, report = clean_dataset(dataset(tmp_path, rows))
    assert texts(cleaned) == ["Clear winner"]
    assert [(line, reason) for line, reason, _ in report.removed] == [
        (1, "label_conflict"), (2, "label_conflict"), (3, "label_conflict")]
    detail = report.removed[0][2]
    assert "'pos' (line 1, line 3)" in detail and "'neg' (line 2)" in detail
    kept, report2 = clean_dataset(dataset(tmp_path, rows), CleanOptions(drop_conflicts=False))
    assert texts(kept) == ["It was fine", "It was fine", "Clear winner"]
    assert report2.removed == [(3, "duplicate", "same as line 1")]


def test_near_duplicates_with_the_same_label(tmp_path: Path) -> None:
    rows = [
        {"text": LONG_EN, "label": "pos"},
        {"text": LONG_EN.replace("quiet", "quiett"), "label": "pos"},  # near-duplicate: dropped
        {"text": LONG_EN.replace("quiet", "quieter"), "label": "neg"},  # same words, other label: kept
        {"text": LONG_ZH, "label": "pos"},
        {"text": LONG_ZH + "！", "label": "pos"},  # Chinese near-duplicate: dropped
        {"text": "A short, unrelated review.", "label": "pos"},
    ]
    cleaned, report = clean_dataset(dataset(tmp_path, rows))
    assert cleaned.lines == [1, 3, 4, 6]
    assert [(line, reason) for line, reason, _ in report.removed] == [(2, "near_duplicate"), (5, "near_duplicate")]
    assert report.removed[0][2].startswith("near-duplicate of line 1 (similarity 0.9")
    off, _ = clean_dataset(dataset(tmp_path, rows), CleanOptions(near_dedupe=False))
    assert len(off) == 6
    strict, _ = clean_dataset(dataset(tmp_path, rows), CleanOptions(near_threshold=0.995))
    assert len(strict) == 6


def test_labels_differing_in_case_are_merged(tmp_path: Path) -> None:
    spellings = ["positive", "Positive", "positive", " POSITIVE ", "positive", "negative", "Negative", "negative"]
    rows = [{"text": f"t{i}", "label": label} for i, label in enumerate(spellings)]
    cleaned, report = clean_dataset(dataset(tmp_path, rows))
    assert report.label_renames == {"Positive": "positive", "POSITIVE": "positive", "Negative": "negative"}
    assert [ex["label"] for ex in cleaned.examples] == ["positive"] * 5 + ["negative"] * 3
    assert cleaned.labels == ["negative", "positive"]
    _, untouched = clean_dataset(dataset(tmp_path, rows), CleanOptions(normalize_labels=False))
    assert untouched.label_renames == {}


def test_multi_label_renames_merge_within_an_example(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": ["News", "news"]}, {"text": "b", "label": ["news", "sport"]},
            {"text": "c", "label": ["news"]}]
    cleaned, report = clean_dataset(dataset(tmp_path, rows))
    assert report.label_renames == {"News": "news"}
    assert [ex["label"] for ex in cleaned.examples] == [["news"], ["news", "sport"], ["news"]]
    assert cleaned.labels == ["news", "sport"]


def test_length_limits_and_empty_after_cleaning(tmp_path: Path) -> None:
    rows = [{"text": "<p> </p>", "label": "a"}, {"text": "abc", "label": "a"},
            {"text": "just right", "label": "b"}, {"text": "much too long for the limit", "label": "b"}]
    cleaned, report = clean_dataset(dataset(tmp_path, rows), CleanOptions(min_chars=5, max_chars=12))
    assert texts(cleaned) == ["just right"]
    assert [(line, reason) for line, reason, _ in report.removed] == [
        (1, "empty"), (2, "too_short"), (4, "too_long")]
    assert report.counts() == {"empty": 1, "too_short": 1, "too_long": 1}


def test_everything_off_changes_nothing(tmp_path: Path) -> None:
    rows = [{"text": "<b>Ｘ</b>  x", "label": "a"}, {"text": "<b>Ｘ</b>  x", "label": "a"}]
    off = CleanOptions(normalize_unicode=False, strip_html=False, collapse_whitespace=False, dedupe=False,
                       near_dedupe=False, normalize_labels=False, drop_conflicts=False)
    ds = dataset(tmp_path, rows)
    cleaned, report = clean_dataset(ds, off)
    assert cleaned.examples == ds.examples
    assert report.kept == 2 and report.changed == 0 and report.removed == []


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="near_threshold"):
        CleanOptions(near_threshold=0)
    with pytest.raises(ConfigError, match="max_chars"):
        CleanOptions(min_chars=10, max_chars=5)


# --- ner and qa ----------------------------------------------------------------------------------------------


def test_ner_tokens_normalized_one_by_one(tmp_path: Path) -> None:
    rows = [
        {"tokens": ["ＥＵ", "rejects", "ｃａｌｌ"], "tags": ["B-ORG", "O", "O"]},
        {"tokens": ["EU", "rejects", "call"], "tags": ["B-ORG", "O", "O"]},  # duplicate once normalized
        {"tokens": ["a", "\u200b"], "tags": ["O", "O"]},  # a token that becomes empty
        {"tokens": ["Paris", "Hilton"], "tags": ["B-PER", "I-PER"]},
        {"tokens": ["Paris", "Hilton"], "tags": ["B-LOC", "B-ORG"]},  # same sentence, other tags
        {"tokens": ["北", "京"], "tags": ["B-LOC", "I-LOC"]},
    ]
    cleaned, report = clean_dataset(dataset(tmp_path, rows, "ner"))
    assert cleaned.examples == [{"tokens": ["EU", "rejects", "call"], "tags": ["B-ORG", "O", "O"]},
                                {"tokens": ["北", "京"], "tags": ["B-LOC", "I-LOC"]}]
    assert [(line, reason) for line, reason, _ in report.removed] == [
        (2, "duplicate"), (3, "empty"), (4, "label_conflict"), (5, "label_conflict")]
    assert "token 1 is empty" in report.removed[1][2]
    assert "first at token 0: 'B-PER' vs 'B-LOC'" in report.removed[2][2]
    assert report.changed == 2
    assert cleaned.labels == ["LOC", "ORG", "PER"]


def test_qa_never_changes_the_context(tmp_path: Path) -> None:
    context = "Tags like <b>this</b> and  spaces   stay; the answer is ＮＹＣ."
    start = context.index("ＮＹＣ")
    answers = {"text": ["ＮＹＣ"], "answer_start": [start]}
    rows = [
        {"id": "1", "question": "  Which&amp;where? ", "context": context, "answers": answers},
        {"id": "2", "question": "Which&where?", "context": context, "answers": answers},  # duplicate question
        {"id": "3", "question": "<br>", "context": context, "answers": answers},  # empty once cleaned
        {"id": "4", "question": "Which&where?", "context": context + " More.", "answers": answers},
    ]
    cleaned, report = clean_dataset(dataset(tmp_path, rows, "qa"))
    assert [ex["id"] for ex in cleaned.examples] == ["1", "4"]
    assert cleaned.examples[0]["question"] == "Which&where?"
    assert cleaned.examples[0]["context"] == context
    assert cleaned.examples[0]["answers"] == answers
    ex = cleaned.examples[0]
    assert ex["context"][ex["answers"]["answer_start"][0]:].startswith(ex["answers"]["text"][0])
    assert [(line, reason) for line, reason, _ in report.removed] == [(2, "duplicate"), (3, "empty")]


# --- the near-duplicate search -------------------------------------------------------------------------------


def brute_force(items: list[str], threshold: float) -> dict[int, int]:
    def shingles(t: str) -> set[str]:
        return {t[i:i + 5] for i in range(len(t) - 4)} if len(t) >= 5 else {t}

    sets = [shingles(t) for t in items]
    kept: list[int] = []
    found: dict[int, int] = {}
    for j, s in enumerate(sets):
        match = next((i for i in kept if len(s & sets[i]) / len(s | sets[i]) >= threshold), None)
        if match is None:
            kept.append(j)
        else:
            found[j] = match
    return found


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9])
def test_near_duplicates_match_brute_force(threshold: float) -> None:
    rng = random.Random(threshold)
    words = ["data", "model", "tune", "good", "bad", "film", "电影", "好看", "服务", "the", "a", "of"]
    base = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 30))) for _ in range(120)]
    items = list(base)
    for _ in range(120):  # variants: a few characters edited
        chars = list(rng.choice(base))
        for _ in range(rng.randint(0, 3)):
            chars[rng.randrange(len(chars))] = rng.choice("xyz电")
        items.append("".join(chars))
    rng.shuffle(items)
    found = near_duplicates(items, threshold)
    assert {j: i for j, (i, _) in found.items()} == brute_force(items, threshold)
    assert all(sim >= threshold for _, sim in found.values())
    assert found  # the test data does contain near-duplicates


@pytest.mark.slow
def test_near_dedupe_of_20k_rows_is_fast(tmp_path: Path) -> None:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)] + ["服务", "好", "差", "房间", "干净"]
    rows = [{"text": " ".join(rng.choice(vocab) for _ in range(rng.randint(8, 40))), "label": str(i % 3)}
            for i in range(20_000)]
    ds = dataset(tmp_path, rows)
    start = time.perf_counter()
    cleaned, report = clean_dataset(ds)
    assert time.perf_counter() - start < 20  # a few seconds on one core; generous for shared CI machines
    assert report.kept + len(report.removed) == 20_000


@pytest.mark.slow
def test_clean_shared_sst2() -> None:
    env = os.environ.get("TUNEFORGE_SHARED_DIR")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared"
    path = base / "datasets" / "sst2" / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"shared datasets not found at {path.resolve()} (set TUNEFORGE_SHARED_DIR to the shared folder)")
    cleaned, report = clean_dataset(load_dataset(path, "classification"))
    assert report.kept == len(cleaned) and 15_000 < report.kept < 20_000
    assert set(report.counts()) <= {"duplicate", "near_duplicate", "label_conflict", "empty"}
    assert cleaned.labels == ["negative", "positive"]
