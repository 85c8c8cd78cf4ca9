"""Replay: mixing a sample of a model's earlier training data into the data it is re-trained on.

A model fine-tuned on new data alone forgets what it knew (catastrophic forgetting); replaying a sample of the old
data alongside the new is the simplest and most reliable remedy (Rolnick et al., 2019, "Experience Replay for
Continual Learning"). Here ``replay`` is a fraction **of the new data's size**: ``--replay 0.3`` with 1,000 new
examples mixes in 300 old ones (all of the old data when it holds fewer). The sample is stratified by label, so
that every old class keeps examples (at least one each while the budget allows), and deterministic for a seed.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError
from tuneforge.utils.fs import atomic_write_text, storage_errors

__all__ = ["Mix", "history_examples", "label_key", "mix_replay", "replay_count", "replay_sample", "write_examples"]


def label_key(example: dict[str, Any]) -> str:
    """The stratum of an example: its label (a multi-label example's sorted labels), or "" for a task without one
    sequence-level label (NER, QA: the sample is then uniform)."""
    label = example.get("label")
    if isinstance(label, list | tuple):
        return "|".join(sorted(str(x) for x in label))
    return "" if label is None else str(label)


def replay_count(fraction: float, n_new: int, n_old: int) -> int:
    """How many old examples ``fraction`` (of the new data's size) replays: ``round(fraction * n_new)``, at most
    all ``n_old``."""
    if not 0 <= fraction <= 10:
        raise ConfigError(f"replay: must be between 0 and 10 (a fraction of the new data's size), not {fraction}")
    return min(n_old, int(round(fraction * n_new)))


def replay_sample(old: Sequence[dict[str, Any]], n: int, *, seed: int) -> list[int]:
    """The indices (ascending) of ``n`` examples of ``old``, stratified by :func:`label_key`: each label gets its
    share of ``n`` by the largest-remainder rule, and every label at least one while ``n`` allows; the same
    ``seed`` gives the same sample."""
    if n <= 0 or not old:
        return []
    if n >= len(old):
        return list(range(len(old)))
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(old):
        groups[label_key(ex)].append(i)
    keys = sorted(groups)
    sizes = np.array([len(groups[k]) for k in keys], dtype=float)
    quota = sizes * n / sizes.sum()
    alloc = np.floor(quota).astype(int)
    if n >= len(keys):  # every class keeps at least one example
        alloc = np.maximum(alloc, 1)
    # hand out what is left (or take back what the minimum of one overspent) by the largest remainders
    order = np.argsort(-(quota - np.floor(quota)), kind="stable")
    j = 0
    while alloc.sum() < n:
        k = order[j % len(order)]
        if alloc[k] < sizes[k]:
            alloc[k] += 1
        j += 1
    by_size = np.argsort(-(alloc - quota), kind="stable")
    j = 0
    while alloc.sum() > n:
        k = by_size[j % len(by_size)]
        if alloc[k] > 1:
            alloc[k] -= 1
        j += 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for k, take in zip(keys, alloc, strict=True):
        members = groups[k]
        chosen += [members[int(i)] for i in rng.choice(len(members), size=int(take), replace=False)]
    return sorted(chosen)


@dataclass
class Mix:
    """The training set of a re-training run: the new examples, then the replayed old ones."""

    examples: list[dict[str, Any]]
    n_new: int
    n_replay: int
    fraction: float
    n_old: int
    replay_labels: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"new_examples": self.n_new, "replayed_examples": self.n_replay, "replay_fraction": self.fraction,
                "old_examples": self.n_old, "replayed_per_label": dict(sorted(self.replay_labels.items()))}


def mix_replay(new: Sequence[dict[str, Any]], old: Sequence[dict[str, Any]], *, fraction: float,
               seed: int) -> Mix:
    """The new examples and a replay sample of ``old`` (``fraction`` of the new data's size, :func:`replay_sample`),
    in a deterministic shuffled order (the Trainer shuffles again; a file in this order reads naturally)."""
    n = replay_count(fraction, len(new), len(old))
    picked = [old[i] for i in replay_sample(old, n, seed=seed)]
    counts: dict[str, int] = defaultdict(int)
    for ex in picked:
        counts[label_key(ex)] += 1
    rows = [dict(ex) for ex in new] + [dict(ex) for ex in picked]
    perm = np.random.default_rng(seed + 1).permutation(len(rows))
    return Mix([rows[int(i)] for i in perm], n_new=len(new), n_replay=len(picked), fraction=fraction,
               n_old=len(old), replay_labels=dict(counts))


def history_examples(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training data a re-trained version keeps for the next replay: the old examples then the new ones, an
    exact duplicate (same fields and values) kept once."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for ex in [*old, *new]:
        key = json.dumps(_row(ex), sort_keys=True, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def _row(example: dict[str, Any]) -> dict[str, Any]:
    """An example as a data-file row (the readers' field names; empty fields left out)."""
    return {k: v for k, v in example.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


def write_examples(path: Path, examples: Sequence[dict[str, Any]]) -> Path:
    """Write examples as a JSONL data file that every task's reader reads back (written to a temporary name and
    renamed)."""
    text = "".join(json.dumps(_row(ex), ensure_ascii=False) + "\n" for ex in examples)
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return path
