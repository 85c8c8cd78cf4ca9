"""Feedback on answers, and its use as training data for the next model.

Each record says whether an answer helped and, optionally, the right intent or the right answer. Exported, a
record becomes an intent-classification row (``text``, ``label``: the corrected intent, or the predicted one of
a helpful answer) and/or a knowledge-base row (``question``, ``answer``, ``intent``) for the next build.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError, DataProblem
from tuneforge.utils.fs import atomic_write_text, storage_errors

__all__ = ["FEEDBACK_FILE", "Feedback", "append_feedback", "export_training_rows", "read_feedback"]

FEEDBACK_FILE = "feedback.jsonl"


@dataclass
class Feedback:
    message: str
    helpful: bool
    intent: str | None = None  # what the assistant predicted
    reply: str | None = None
    correct_intent: str | None = None
    correct_answer: str | None = None
    session_id: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def problems(self, where: str = "feedback") -> list[DataProblem]:
        out = []
        if not self.message.strip():
            out.append(DataProblem(where, None, "message", "empty message", "give the customer's message"))
        if not self.helpful and not (self.correct_intent or self.correct_answer):
            pass  # "not helpful" alone is still worth keeping: it lowers trust in that intent's answer
        if self.correct_answer is not None and not self.correct_answer.strip():
            out.append(DataProblem(where, None, "correct_answer", "empty answer", "leave it out or write the answer"))
        return out


def append_feedback(bundle: Path, fb: Feedback) -> None:
    """Add one record to the bundle's feedback.jsonl (the whole file is rewritten atomically)."""
    problems = fb.problems()
    if problems:
        raise DataError(problems)
    path = Path(bundle) / FEEDBACK_FILE
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    with storage_errors(path):
        atomic_write_text(path, old + json.dumps(asdict(fb), ensure_ascii=False) + "\n")


def read_feedback(bundle: Path) -> list[Feedback]:
    path = Path(bundle) / FEEDBACK_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out.append(Feedback(**{k: row[k] for k in Feedback.__dataclass_fields__ if k in row}))
    return out


def export_training_rows(records: Iterable[Feedback | dict[str, Any]], *, labels: Sequence[str] | None = None
                         ) -> dict[str, list[dict[str, Any]]]:
    """``{"intents": [{text, label}], "knowledge": [{question, answer, intent}]}`` from feedback records.

    An intent row comes from a corrected intent, or from a helpful answer's predicted intent; ``labels``, when
    given, keeps only intents the next model knows (a new intent needs more than one example). The latest record
    for the same message wins.
    """
    allowed = set(labels) if labels is not None else None
    intents: dict[str, dict[str, Any]] = {}
    knowledge: dict[str, dict[str, Any]] = {}
    for r in records:
        fb = r if isinstance(r, Feedback) else Feedback(**{k: r[k] for k in Feedback.__dataclass_fields__ if k in r})
        text = fb.message.strip()
        label = fb.correct_intent or (fb.intent if fb.helpful else None)
        if label and (allowed is None or label in allowed):
            intents[text] = {"text": text, "label": label, "source": "feedback"}
        elif fb.correct_intent is None and not fb.helpful:
            intents.pop(text, None)  # a later "not helpful" withdraws an earlier confirmation
        if fb.correct_answer:
            knowledge[text] = {"question": text, "answer": fb.correct_answer.strip(),
                               "intent": fb.correct_intent or None, "source": "feedback"}
    return {"intents": list(intents.values()), "knowledge": list(knowledge.values())}
