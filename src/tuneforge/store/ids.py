"""Public identifiers: a type prefix and 24 random letters and digits (``file-…``, ``ftjob-…``)."""

from __future__ import annotations

import secrets
import string

__all__ = ["new_id"]

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, n: int = 24) -> str:
    return f"{prefix}-{''.join(secrets.choice(_ALPHABET) for _ in range(n))}"
