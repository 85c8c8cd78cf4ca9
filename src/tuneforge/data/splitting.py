"""Split a dataset into train/dev/test by keys a task gives: stratified, grouped, or random.

:func:`tuneforge.tasks.split_dataset` asks the dataset's task for its :class:`SplitKeys` (classification:
stratified by label; qa: grouped by article; ner: random) and calls :func:`split_by_keys`.

* stratified (scikit-learn): every split keeps the class proportions; classes too small to stratify stay in train.
* grouped: no group (an article) is in two splits.

Splits are deterministic for a seed, and each split keeps the examples in their original file order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneforge.data.dataset import Dataset
from tuneforge.errors import ConfigError

__all__ = ["SplitKeys", "split_by_keys"]


@dataclass(frozen=True)
class SplitKeys:
    """How to split examples: ``groups`` (one key per example; a group stays in one split) wins over ``strata``
    (one key per example; splits keep their proportions); neither means a random split."""

    strata: Sequence[Any] | None = None
    groups: Sequence[Any] | None = None
    #: what a group is, for messages ("articles (titles)")
    group_noun: str = "groups"
    #: the hint when there are too few groups
    group_hint: str = "examples of one group must stay in one split; add more groups"


def split_by_keys(ds: Dataset, keys: SplitKeys, *, dev: float = 0.1, test: float = 0.1,
                  seed: int = 0) -> dict[str, Dataset]:
    """Split ``ds`` into ``{"train", "dev", "test"}`` by ``keys``; a split whose fraction is 0 is left out.

    Fractions are of the number of examples (of the number of groups when grouped, so sizes are approximate).

    Raises:
        ConfigError: a fraction outside [0, 1), ``dev + test >= 1``, or too few examples (or groups) to give
            every requested split at least one.
    """
    _check_fractions(dev, test)
    n = len(ds)
    wanted = {"dev": dev, "test": test}
    if keys.groups is not None:
        parts = _grouped(list(keys.groups), keys, dev, test, seed)
    else:
        n_test = _size(test, n)
        n_dev = _size(dev, n)
        if n - n_test - n_dev < 1:
            raise ConfigError(f"dev/test: {n} example(s) are too few for dev={dev} and test={test}",
                              hint="use more data or smaller fractions")
        strata = list(keys.strata) if keys.strata is not None else None
        parts = _stratified(np.arange(n), strata, n_dev, n_test, seed)
    out = {"train": ds.select(sorted(parts["train"]))}
    for name in ("dev", "test"):
        if wanted[name] > 0:
            out[name] = ds.select(sorted(parts[name]))
    return out


def _check_fractions(dev: float, test: float) -> None:
    errors = []
    for name, value in (("dev", dev), ("test", test)):
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) \
                or not 0 <= value < 1:
            errors.append(f"{name}: must be a fraction in [0, 1), got {value!r}")
    if not errors and dev + test >= 1:
        errors.append(f"dev + test: must be below 1 so something is left to train on, got {dev + test:g}")
    if errors:
        raise ConfigError(errors)


def _size(fraction: float, n: int) -> int:
    # At least one example in a requested split, like scikit-learn's ceil for float test sizes.
    return 0 if fraction == 0 else max(1, math.ceil(fraction * n - 1e-9))


def _stratified(idx: np.ndarray, keys: Sequence[Any] | None, n_dev: int, n_test: int,
                seed: int) -> dict[str, list[int]]:
    rest, test_idx = _cut(idx, keys, n_test, seed)
    rest_keys = [keys[i] for i in rest] if keys is not None else None
    train_idx, dev_idx = _cut(np.asarray(rest), rest_keys, n_dev, seed)
    return {"train": train_idx, "dev": dev_idx, "test": test_idx}


def _cut(idx: np.ndarray, keys: Sequence[Any] | None, n_take: int, seed: int) -> tuple[list[int], list[int]]:
    """Take ``n_take`` of ``idx`` out, stratified by ``keys`` where each class has at least two members."""
    from sklearn.model_selection import train_test_split

    if n_take == 0:
        return idx.tolist(), []
    if keys is None:
        keep, take = train_test_split(idx, test_size=n_take, random_state=seed, shuffle=True)
        return list(keep), list(take)
    counts = Counter(keys)
    # Classes with a single example cannot be stratified; they stay on the training side.
    rare = np.array([counts[k] < 2 for k in keys], dtype=bool)
    pool, pool_keys = idx[~rare], [k for k, r in zip(keys, rare, strict=True) if not r]
    fixed = idx[rare].tolist()
    n_take = min(n_take, len(pool) - 1)
    if n_take < 1:
        return idx.tolist(), []
    try:
        keep, take = train_test_split(pool, test_size=n_take, random_state=seed, shuffle=True,
                                      stratify=[str(k) for k in pool_keys])
    except ValueError:
        # Fewer examples to take than classes (tiny data): a plain random cut is the best we can do.
        keep, take = train_test_split(pool, test_size=n_take, random_state=seed, shuffle=True)
    return fixed + list(keep), list(take)


def _grouped(groups: list[Any], keys: SplitKeys, dev: float, test: float, seed: int) -> dict[str, list[int]]:
    n_groups = len(set(groups))
    needed = 1 + (dev > 0) + (test > 0)
    if n_groups < needed:
        raise ConfigError(f"dev/test: {n_groups} {keys.group_noun} are too few for a grouped split into {needed} "
                          "parts", hint=keys.group_hint)
    idx = np.arange(len(groups))
    rest, test_idx = _group_cut(idx, groups, test, seed)
    # dev is a fraction of the whole; rescale it to the groups left after taking test out.
    dev_of_rest = dev / (1 - test) if dev > 0 else 0.0
    train_idx, dev_idx = _group_cut(np.asarray(rest), [groups[i] for i in rest], dev_of_rest, seed)
    return {"train": train_idx, "dev": dev_idx, "test": test_idx}


def _group_cut(idx: np.ndarray, groups: Sequence[Any], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    from sklearn.model_selection import GroupShuffleSplit

    if fraction <= 0:
        return idx.tolist(), []
    n_groups = len(set(groups))
    n_take = min(max(1, math.ceil(fraction * n_groups - 1e-9)), n_groups - 1)
    splitter = GroupShuffleSplit(n_splits=1, test_size=n_take, random_state=seed)
    keep, take = next(splitter.split(idx, groups=[str(g) for g in groups]))
    return idx[keep].tolist(), idx[take].tolist()
