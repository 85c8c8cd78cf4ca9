"""The writer's training data: questions with reference answers turned into retrieval-augmented chat examples
(numbered passages + the question -> the answer citing the passages that hold it), rendered exactly as the
assistant prompts its writer (:func:`.writer.writer_messages`), so that a supervised fine-tune
(``tuneforge train --task generation``) learns to answer from passages and cite them.

For each question the bundle retrieves its knowledge-base passages (the question's own passage, when the
knowledge base holds it, is left out: at answer time a new question has none). The passages that hold the
answer are those of the row's ``passage_id`` or ``intent`` (:func:`.answers.holds_answer`; a row naming neither
takes the best retrieved passage). Then:

* an *answer* example shows ``writer_passages`` passages in random order (so the writer learns to find the one
  that answers rather than to cite ``[1]``): the retrieved ones, with the best passage that holds the answer
  swapped in when retrieval missed it, or (``mixed_share`` of them) that passage among the nearest ones that do
  not hold it; the target is the reference answer with the numbers of the passages that hold it after its first
  sentence (:func:`.writer.cite`);
* a *no-answer* example (``no_answer_share`` of them) shows only passages that do not hold the answer; the
  target is :data:`.writer.NO_ANSWER`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.solutions.assistant.answers import holds_answer
from tuneforge.solutions.assistant.assistant import Assistant
from tuneforge.solutions.assistant.writer import NO_ANSWER, cite, writer_messages

__all__ = ["writer_examples"]

#: passages retrieved per question to choose the shown ones from
_POOL = 200


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def writer_examples(
    assistant: Assistant,
    rows: Sequence[dict[str, Any]],
    *,
    limit: int | None = None,
    no_answer_share: float = 0.15,
    mixed_share: float = 0.3,
    seed: int = 42,
    batch_size: int = 64,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Chat examples (``{"messages": [system, user, assistant]}``) for the writer from rows with a reference
    ``answer`` (see the module docstring); ``limit`` of them, drawn at random (``seed``) when there are more.
    Returns the examples and a summary (how many of each kind, rows skipped because no passage holds their
    answer)."""
    problems = [
        f"{name}: must be in [0, 1), got {v}"
        for name, v in (("no_answer_share", no_answer_share), ("mixed_share", mixed_share))
        if not 0 <= v < 1
    ]
    if problems:
        raise ConfigError(problems)
    rng = random.Random(seed)
    usable = [r for r in rows if r.get("answer")]
    if limit is not None and len(usable) > limit:
        usable = rng.sample(usable, limit)
    cfg = assistant.config
    k = cfg.writer_passages
    vectors = assistant.embed([r["question"] for r in usable], batch_size=batch_size)
    pools = assistant.search_knowledge(vectors, min(_POOL, len(assistant.passages)), floor=-1.0)
    examples: list[dict[str, Any]] = []
    summary = {"answer": 0, "mixed": 0, "no_answer": 0, "skipped": 0, "own_passage_left_out": 0}
    for row, pool in zip(usable, pools, strict=True):
        q, a = _norm(row["question"]), _norm(row["answer"])
        cands = []
        for r, _ in pool:
            p = assistant.passages[r]
            if _norm(p.title) == q or _norm(p.answer) == a:  # the question's own passage
                summary["own_passage_left_out"] += 1
                continue
            cands.append(p)
        if holds_answer({}, row) is None:  # the row names no passage: the best retrieved one holds its answer
            gold = {cands[0].id} if cands else set()
        else:
            gold = {p.id for p in cands if holds_answer({"id": p.id, "intent": p.intent}, row)}
        others = [p for p in cands if p.id not in gold]
        if rng.random() < no_answer_share and len(others) >= k:
            shown, target = others[:k], NO_ANSWER
            summary["no_answer"] += 1
        elif gold:
            best = next(p for p in cands if p.id in gold)
            if rng.random() < mixed_share and len(others) >= k - 1:
                shown = [best, *others[: k - 1]]  # one passage answers, the nearest others do not
                summary["mixed"] += 1
            else:
                shown = cands[:k]
                if best not in shown:
                    shown = [*shown[: k - 1], best]
            rng.shuffle(shown)
            target = cite(row["answer"], [n for n, p in enumerate(shown, 1) if p.id in gold])
            summary["answer"] += 1
        else:
            summary["skipped"] += 1
            continue
        msgs = writer_messages(row["question"], shown, chars=cfg.writer_passage_chars)
        examples.append({"messages": [*msgs, {"role": "assistant", "content": target}]})
    summary["examples"] = len(examples)
    return examples, summary
