"""The code's shape, checked: layers import downwards only with no circles (import-linter's contracts in
pyproject.toml), the run-folder format has one owner, tasks are compared by attribute and not by name outside
``tasks/``, no private name crosses a package, and no source file outgrows 500 lines."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tuneforge"
ROOT = SRC.parents[1]


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def test_import_contracts_hold() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        found = shutil.which("lint-imports")
        if found is None:
            pytest.fail("lint-imports is not installed: the dev extra (import-linter) is missing")
        exe = Path(found)
    r = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "2 kept, 0 broken" in r.stdout, r.stdout[-2000:]


def test_the_run_folder_format_has_one_owner() -> None:
    spelled = [p.relative_to(SRC).as_posix() for p in _sources()
               if '"tuneforge.json"' in p.read_text(encoding="utf-8")
               or '"run-config.json"' in p.read_text(encoding="utf-8")]
    assert spelled == ["runs.py"]


def test_no_source_file_over_500_lines() -> None:
    big = {p.relative_to(SRC).as_posix(): n for p in _sources()
           if "migrations" not in p.parts and not p.name.startswith("i18n")
           and (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert big == {}


_TASK_LITERAL = re.compile(r"""(==|!=)\s*["'](classification|ner|qa|generation)["']|"""
                           r"""["'](classification|ner|qa|generation)["']\s*(==|!=)""")


def test_no_task_name_comparisons_outside_tasks() -> None:
    found = []
    for p in _sources():
        rel = p.relative_to(SRC)
        if rel.parts[0] == "tasks":
            continue
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if _TASK_LITERAL.search(line):
                found.append(f"{rel}:{i}: {line.strip()}")
    assert found == []


def _package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])  # tuneforge.<package>


def test_no_private_name_is_imported_across_packages() -> None:
    crossing = []
    for p in _sources():
        rel = p.relative_to(SRC.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            if not node.module.startswith("tuneforge.") or _package_of(node.module) == _package_of(module):
                continue
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            private += [part for part in node.module.split(".") if part.startswith("_") and not part.startswith("__")]
            if private:
                crossing.append(f"{module} imports {', '.join(private)} from {node.module}")
    assert crossing == []
