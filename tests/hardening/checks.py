"""How a corpus answer is judged: it names every expected fragment ("line N" may be written "FILE:N")."""

from __future__ import annotations

import re

from tests.hardening.corpus import Case


def missing_names(case: Case, text: str) -> list[str]:
    low = " ".join(text.split()).lower()  # wrapped console output reads as one line
    out = []
    for name in case.names:
        m = re.fullmatch(r"line (\d+)", name)
        if m and re.search(rf"(line {m[1]}\b|:{m[1]}\b)", low):
            continue
        if name.lower() not in low:
            out.append(name)
    return out
