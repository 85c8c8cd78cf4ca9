"""The fine-tuning job's state machine.

::

    validating_files ──> queued ──> running ──> succeeded
          │  │             │  │       │  │  └─> failed      (a bad file, a bad option, or max attempts)
          │  │             │  │       │  └────> queued      (its worker died or shut down: resumed later)
          │  └─> paused <──┘  └──> cancelled <──┘
          └────────> failed        paused ──> queued | validating_files | cancelled

Statuses are the OpenAI API's, plus ``paused``.
"""

from __future__ import annotations

__all__ = ["CLAIMABLE", "FINAL", "STATUSES", "TRANSITIONS", "can_transition"]

STATUSES = ("validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")
#: statuses a worker claims: the first to validate the files, the second to train
CLAIMABLE = ("validating_files", "queued")

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "validating_files": ("queued", "failed", "cancelled", "paused", "validating_files"),
    "queued": ("running", "cancelled", "paused"),
    "running": ("succeeded", "failed", "cancelled", "paused", "queued"),
    "paused": ("queued", "validating_files", "cancelled"),
    "succeeded": (),
    "failed": (),
    "cancelled": (),
}


def can_transition(old: str, new: str) -> bool:
    return new in TRANSITIONS.get(old, ())
