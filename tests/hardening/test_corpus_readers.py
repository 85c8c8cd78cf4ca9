"""The bad-input corpus through the readers (``tuneforge.tasks.load_dataset``, as training and ``data check``
call them): every file refused with a data error naming what to fix, or read with the warning it deserves; no
other exception, no hang (a named pipe), no memory blow-up (a link to /dev/zero)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.hardening.checks import missing_names
from tests.hardening.corpus import Case, build
from tuneforge.errors import ConfigError, DataError
from tuneforge.tasks import load_dataset


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return build(tmp_path_factory.mktemp("corpus"))


def test_the_corpus_covers_every_reader_and_task(corpus: list[Case]) -> None:
    assert len(corpus) >= 60
    readers = Counter(Path(c.name).suffix for c in corpus)
    assert {".csv", ".tsv", ".jsonl", ".json", ".conll"} <= set(readers)
    assert sum(1 for c in corpus if c.task == "qa" and c.name.startswith("squad")) >= 5  # the SQuAD reader
    assert set(Counter(c.task for c in corpus)) == {"classification", "ner", "qa"}
    for defect in ("deep", "nul", "gbk", "big5", "shift-jis", "utf16", "semicolon", "duplicate-keys", "named-pipe",
                   "dev-zero", "png", "missing", "label-case", "huge-label"):
        assert any(defect in c.name for c in corpus), defect


def test_every_corpus_file_is_refused_with_what_to_fix(corpus: list[Case]) -> None:
    failures = []
    for case in corpus:
        try:
            ds = load_dataset(case.path, case.task, min_classes=2)
        except (DataError, ConfigError) as e:
            text = str(e)
            if case.warn:
                failures.append(f"{case.name}: refused, expected a warning: {text}")
            elif not case.loose and missing_names(case, text):
                failures.append(f"{case.name}: {missing_names(case, text)} not in: {text}")
            if isinstance(e, DataError):
                assert all(p.file for p in e.problems) and all(p.message for p in e.problems), case.name
            continue
        except Exception as e:  # noqa: BLE001 - exactly what must never happen
            failures.append(f"{case.name}: {type(e).__name__}: {e}")
            continue
        text = " ".join(str(w) for w in ds.warnings)
        if not (case.warn or case.loose):
            failures.append(f"{case.name}: accepted")
        elif missing_names(case, text):
            failures.append(f"{case.name}: warning {missing_names(case, text)} not in: {text!r}")
    assert not failures, "\n".join(failures)
