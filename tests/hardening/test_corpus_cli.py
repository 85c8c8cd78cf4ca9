"""The bad-input corpus through the CLI, as a user runs it: ``tuneforge data check FILE --task T`` exits
non-zero with the problem and what to fix (or 0 with the warning), never a traceback, never a hang."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from tests.hardening.checks import missing_names
from tests.hardening.corpus import Case, build

TUNEFORGE = Path(sys.executable).with_name("tuneforge")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return build(tmp_path_factory.mktemp("corpus"))


def _check(case: Case) -> tuple[Case, int, str]:
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb"}
    p = subprocess.run([str(TUNEFORGE), "data", "check", str(case.path), "--task", case.task], capture_output=True,
                       text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    return case, p.returncode, p.stdout + p.stderr


@pytest.mark.skipif(not TUNEFORGE.exists(), reason="the tuneforge script is not installed next to python")
def test_data_check_on_the_corpus(corpus: list[Case]) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(_check, corpus))
    failures = []
    for case, code, out in results:
        case = replace(case, warn=case.warn or case.lenient)  # read with a warning unless --strict
        if "Traceback" in out or code not in (0, 1, 2):
            failures.append(f"{case.name}: exit {code}\n{out[-1500:]}")
        elif case.warn and code != 0:
            failures.append(f"{case.name}: exit {code}, expected a warning\n{out[-800:]}")
        elif not case.warn and not case.loose and code == 0:
            failures.append(f"{case.name}: data check said OK\n{out[-800:]}")
        elif not case.loose and missing_names(case, out):
            failures.append(f"{case.name}: {missing_names(case, out)} not in\n{out[-800:]}")
    assert not failures, "\n\n".join(failures)
