"""Answer quality: retrieval-only against generated answers on the same questions.

An evaluation row is a customer question with its reference answer and, to score citations, what holds the
answer: ``passage_id`` (the knowledge-base passage) or ``intent`` (any passage of that intent holds it). A row
without a reference answer (``answer`` null or empty) is a question the knowledge base cannot answer: the right
reply says nothing relevant was found.

Both modes answer through :meth:`.assistant.Assistant.compose` from the same retrieved passages and the same
similarity floor, before the handover rules, and are scored alike: token F1 and ROUGE-L against the reference
(:func:`tuneforge.tasks.generation.metrics.text_scores`: SQuAD's normalisation, ``rouge-score``), and citation
accuracy: the share of answerable questions whose first citation (retrieval-only: the passage it answers with)
is a passage that holds the answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError, DataProblem
from tuneforge.solutions.assistant.assistant import Assistant, Composed
from tuneforge.solutions.assistant.writer import Writer

__all__ = ["evaluate_answers", "holds_answer", "read_answer_rows"]


def read_answer_rows(path: Path, *, require_answer: bool = False) -> list[dict[str, Any]]:
    """Rows of ``{"question", "answer", "intent", "passage_id"}`` from JSONL: those keys, or a chat conversation
    (``messages``: the first user message and the last assistant reply) with ``intent`` / ``passage_id`` beside
    it. Every bad line is reported at once."""
    problems: list[DataProblem] = []
    rows: list[dict[str, Any]] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError([DataProblem(str(path), None, None, "no such file")]) from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(DataProblem(str(path), i, None, f"invalid JSON: {e.msg}"))
            continue
        if not isinstance(raw, dict):
            problems.append(DataProblem(str(path), i, None, "not an object", 'write {"question": ..., "answer": ...}'))
            continue
        question, answer = raw.get("question"), raw.get("answer")
        if isinstance(raw.get("messages"), list):
            msgs = [m for m in raw["messages"] if isinstance(m, dict)]
            question = next((m.get("content") for m in msgs if m.get("role") == "user"), None)
            replies = [m.get("content") for m in msgs if m.get("role") == "assistant"]
            answer = replies[-1] if replies else None
        if not isinstance(question, str) or not question.strip():
            problems.append(
                DataProblem(
                    str(path), i, "question", "missing question", 'give "question" (or "messages" with a user message)'
                )
            )
            continue
        if answer is not None and not isinstance(answer, str):
            problems.append(DataProblem(str(path), i, "answer", "the answer must be text (or null: unanswerable)"))
            continue
        if require_answer and not (answer or "").strip():
            problems.append(DataProblem(str(path), i, "answer", "missing answer", "each row needs its reference"))
            continue
        rows.append(
            {
                "question": question.strip(),
                "answer": (answer or "").strip() or None,
                "intent": raw.get("intent"),
                "passage_id": raw.get("passage_id"),
                "line": i,
            }
        )
    if problems:
        raise DataError(problems, hint="Fix these lines of the evaluation file.")
    if not rows:
        raise DataError([DataProblem(str(path), None, None, "no questions")])
    return rows


def holds_answer(passage: dict[str, Any], row: dict[str, Any]) -> bool | None:
    """Whether ``passage`` holds the answer to ``row``: its id is the row's ``passage_id`` (one id or a list),
    else its intent is the row's ``intent``; None when the row says neither."""
    gold = row.get("passage_id")
    if gold:
        return passage.get("id") in (gold if isinstance(gold, list) else [gold])
    if row.get("intent"):
        return passage.get("intent") == row["intent"]
    return None


def _score(made: Sequence[Composed], rows: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
    from tuneforge.tasks.generation.metrics import text_scores

    answerable = [i for i, r in enumerate(rows) if r["answer"]]
    unanswerable = [i for i, r in enumerate(rows) if not r["answer"]]
    out: dict[str, Any] = {"questions": len(rows), "answerable": len(answerable)}
    if answerable:
        s = text_scores([made[i].text for i in answerable], [rows[i]["answer"] for i in answerable])
        out.update(
            token_f1=round(s["f1"] / 100, 4),
            rougeL=round(s["rougeL"] / 100, 4),
            exact_match=round(s["exact_match"] / 100, 4),
        )
        judged = [i for i in answerable if holds_answer({}, rows[i]) is not None]  # rows that name a gold passage
        if judged:
            right = [bool(made[i].citations) and bool(holds_answer(made[i].citations[0], rows[i])) for i in judged]
            shown = [any(holds_answer(p, rows[i]) for p in made[i].passages) for i in judged]
            out.update(
                citation_accuracy=round(sum(right) / len(judged), 4),
                answer_passage_shown=round(sum(shown) / len(judged), 4),
            )
        out.update(
            cited=round(sum(bool(made[i].citations) for i in answerable) / len(answerable), 4),
            said_nothing_relevant=round(sum(made[i].nothing_relevant for i in answerable) / len(answerable), 4),
            invalid_citations=round(sum(bool(made[i].invalid_citations) for i in answerable) / len(answerable), 4),
            mean_words=round(sum(len(made[i].text.split()) for i in answerable) / len(answerable), 1),
        )
    if unanswerable:
        out["unanswerable"] = len(unanswerable)
        out["unanswerable_said_nothing_relevant"] = round(
            sum(made[i].nothing_relevant for i in unanswerable) / len(unanswerable), 4
        )
    out["seconds_per_question"] = round(seconds / max(1, len(rows)), 4)
    return out


def evaluate_answers(
    assistant: Assistant,
    rows: Sequence[dict[str, Any]],
    *,
    modes: Sequence[str] = ("retrieval", "generate"),
    writers: Mapping[str, Writer] | None = None,
    batch_size: int = 8,
    keep: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Answer every row's question in each mode and score the answers (see the module docstring).

    ``modes`` are ``retrieval`` and ``generate`` (with the assistant's writer); ``writers`` adds generated answers
    by other writers, by name (a base model against a fine-tuned one). ``keep``: how many answers of each mode to
    return under ``samples``. Returns ``{"questions", "modes": {name: metrics}, "samples": ...}``."""
    say = progress or (lambda _m: None)
    questions = [r["question"] for r in rows]
    vectors = assistant.embed(questions)
    runs: list[tuple[str, str, Writer | None]] = [(m, m, None) for m in modes]
    runs += [(f"generate:{name}", "generate", w) for name, w in (writers or {}).items()]
    result: dict[str, Any] = {
        "questions": len(rows),
        "passage_min_similarity": assistant.config.passage_min_similarity,
        "modes": {},
        "samples": {},
    }
    for name, mode, writer in runs:
        say(f"Answering {len(rows)} questions ({name})...")
        made: list[Composed] = []
        t0 = time.perf_counter()
        for b in range(0, len(rows), batch_size):
            made += assistant.compose(
                questions[b : b + batch_size], mode=mode, vectors=vectors[b : b + batch_size], writer=writer
            )
        result["modes"][name] = _score(made, rows, time.perf_counter() - t0)
        if keep:
            result["samples"][name] = [
                {
                    "question": rows[i]["question"],
                    "reference": rows[i]["answer"],
                    "answer": made[i].text,
                    "cited": [c["id"] for c in made[i].citations],
                }
                for i in range(min(keep, len(rows)))
            ]
    return result
