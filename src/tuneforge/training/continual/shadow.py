"""Shadow mode: the candidate predicts the inputs production saw, silently, and its agreement with production is
reported (which inputs the two models answer differently, before the candidate answers anyone).

Inputs come from a JSONL file: one input per line, a JSON string or an object (``{"text": ...}``, a sentence pair
``{"text", "text_pair"}``, QA's ``{"question", "context"}``; a logged row's ``input`` field is read too), so the
service's input log or any export of live traffic can be replayed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError, DataProblem

__all__ = ["read_inputs", "shadow_compare"]


def read_inputs(path: Path, *, limit: int | None = None) -> list[str | dict[str, Any]]:
    """The inputs of a JSONL file (see the module's docstring); every unreadable line is reported at once."""
    problems: list[DataProblem] = []
    inputs: list[str | dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                problems.append(DataProblem(str(path), i, None, f"not JSON: {e}", "write one JSON value a line"))
                continue
            if isinstance(row, dict) and "input" in row:
                row = row["input"]
            if isinstance(row, dict):
                row = {k: v for k, v in row.items() if k not in ("label", "labels", "prediction")}
            if not isinstance(row, str | dict):
                problems.append(DataProblem(str(path), i, None, "not a text or an object",
                                            'write "a text" or {"text": "..."}'))
                continue
            inputs.append(row)
            if limit is not None and len(inputs) >= limit:
                break
    if problems:
        raise DataError(problems)
    return inputs


def _answer(prediction: dict[str, Any]) -> Any:
    """What a prediction decides (its label, labels, entities or answer), comparable with ``==``."""
    for key in ("label", "labels", "entities", "answer", "text"):
        if key in prediction:
            value = prediction[key]
            return json.dumps(value, sort_keys=True, ensure_ascii=False) if isinstance(value, list | dict) else value
    return json.dumps(prediction, sort_keys=True, ensure_ascii=False, default=str)


def shadow_compare(production: Any, candidate: Any, inputs: Sequence[str | dict[str, Any]], *,
                   batch_size: int = 64, examples: int = 10) -> dict[str, Any]:
    """Both predictors on ``inputs``: the agreement rate, how often each pair of answers occurs where they differ,
    the candidate's answer distribution against production's, and the first ``examples`` disagreements."""
    if not inputs:
        raise DataError([DataProblem("inputs", None, None, "no inputs", "give at least one logged input")])
    a = production.predict(list(inputs), batch_size=batch_size)
    b = candidate.predict(list(inputs), batch_size=batch_size)
    agree = [_answer(x) == _answer(y) for x, y in zip(a, b, strict=True)]
    changes = Counter(f"{_answer(x)} -> {_answer(y)}" for x, y, same in zip(a, b, agree, strict=True) if not same)
    shown = [{"input": inp, "production": _answer(x), "candidate": _answer(y)}
             for inp, x, y, same in zip(inputs, a, b, agree, strict=True) if not same][:examples]
    return {"inputs": len(inputs), "agreement": sum(agree) / len(agree), "disagreements": len(agree) - sum(agree),
            "changes": dict(changes.most_common(20)),
            "production_answers": dict(Counter(str(_answer(x)) for x in a).most_common(20)),
            "candidate_answers": dict(Counter(str(_answer(y)) for y in b).most_common(20)),
            "examples": shown}
