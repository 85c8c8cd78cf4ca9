"""Split a dataset into train/dev/test, and write a dataset back to JSON Lines.

* classification: stratified by label (scikit-learn), so every split keeps the class proportions; classes too
  small to stratify stay in train. Multi-label data is stratified on each example's first label.
* qa: grouped by article (title, or context when titles are missing), so no passage is seen in two splits.
* ner: random.

Splits are deterministic for a seed, and each split keeps the examples in their original file order.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from tuneforge.data.dataset import Dataset
from tuneforge.errors import ConfigError
from tuneforge.utils.fs import write_jsonl

__all__ = ["split_dataset", "write_dataset"]


def split_dataset(ds: Dataset, *, dev: float = 0.1, test: float = 0.1, seed: int = 0) -> dict[str, Dataset]:
    """Split ``ds`` into ``{"train", "dev", "test"}``; a split whose fraction is 0 is left out.

    Fractions are of the number of examples (for qa, of the number of articles, so sizes are approximate).

    Raises:
        ConfigError: a fraction outside [0, 1), ``dev + test >= 1``, or too few examples (or articles) to give
            every requested split at least one.
    """
    _check_fractions(dev, test)
    n = len(ds)
    wanted = {"dev": dev, "test": test}
    if ds.task == "qa":
        parts = _grouped(ds, dev, test, seed)
    else:
        n_test = _size(test, n)
        n_dev = _size(dev, n)
        if n - n_test - n_dev < 1:
            raise ConfigError(f"dev/test: {n} example(s) are too few for dev={dev} and test={test}",
                              hint="use more data or smaller fractions")
        keys = _strata(ds) if ds.task == "classification" else None
        parts = _stratified(np.arange(n), keys, n_dev, n_test, seed)
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


def _strata(ds: Dataset) -> list[Any] | None:
    keys: list[Any] = []
    for ex in ds.examples:
        label = ex["label"]
        if label is None:
            return None  # unlabelled data: nothing to stratify on
        keys.append((label[0] if label else "") if isinstance(label, list) else label)
    return keys


def _stratified(idx: np.ndarray, keys: Sequence[Any] | None, n_dev: int, n_test: int,
                seed: int) -> dict[str, list[int]]:
    rest, test_idx = _cut(idx, keys, n_test, seed)
    rest_keys = [keys[i] for i in rest] if keys is not None else None
    train_idx, dev_idx = _cut(np.asarray(rest), rest_keys, n_dev, seed)
    return {"train": train_idx, "dev": dev_idx, "test": test_idx}


def _cut(idx: np.ndarray, keys: Sequence[Any] | None, n_take: int, seed: int) -> tuple[list[int], list[int]]:
    """Take ``n_take`` of ``idx`` out, stratified by ``keys`` where each class has at least two members."""
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


def _grouped(ds: Dataset, dev: float, test: float, seed: int) -> dict[str, list[int]]:
    titled = all(ex.get("title") for ex in ds.examples)
    groups = [ex["title"] if titled else ex["context"] for ex in ds.examples]
    n_groups = len(set(groups))
    needed = 1 + (dev > 0) + (test > 0)
    if n_groups < needed:
        what = "articles (titles)" if titled else "distinct contexts"
        raise ConfigError(f"dev/test: {n_groups} {what} are too few for a grouped split into {needed} parts",
                          hint="questions about one passage must stay in one split; add more passages")
    idx = np.arange(len(ds))
    rest, test_idx = _group_cut(idx, groups, test, seed)
    # dev is a fraction of the whole; rescale it to the articles left after taking test out.
    dev_of_rest = dev / (1 - test) if dev > 0 else 0.0
    train_idx, dev_idx = _group_cut(np.asarray(rest), [groups[i] for i in rest], dev_of_rest, seed)
    return {"train": train_idx, "dev": dev_idx, "test": test_idx}


def _group_cut(idx: np.ndarray, groups: Sequence[Any], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    if fraction <= 0:
        return idx.tolist(), []
    n_groups = len(set(groups))
    n_take = min(max(1, math.ceil(fraction * n_groups - 1e-9)), n_groups - 1)
    splitter = GroupShuffleSplit(n_splits=1, test_size=n_take, random_state=seed)
    keep, take = next(splitter.split(idx, groups=[str(g) for g in groups]))
    return idx[keep].tolist(), idx[take].tolist()


def write_dataset(ds: Dataset, path: str | os.PathLike[str]) -> None:
    """Write the normalized examples as JSON Lines, atomically; :func:`load_dataset` reads the file back as is.

    classification: ``text``, ``text_pair`` (when set) and ``label`` (when set); ner: ``tokens`` and ``tags``;
    qa: the Hugging Face SQuAD layout (``id``, ``title`` when set, ``context``, ``question``, ``answers``).
    """
    write_jsonl(path, (_record(ds.task, ex) for ex in ds.examples))


def _record(task: str, ex: dict[str, Any]) -> dict[str, Any]:
    if task == "classification":
        rec: dict[str, Any] = {"text": ex["text"]}
        if ex["text_pair"] is not None:
            rec["text_pair"] = ex["text_pair"]
        if ex["label"] is not None:
            rec["label"] = ex["label"]
        return rec
    if task == "ner":
        return {"tokens": ex["tokens"], "tags": ex["tags"]} if ex["tags"] is not None else {"tokens": ex["tokens"]}
    rec = {"id": ex["id"]}
    if ex.get("title") is not None:
        rec["title"] = ex["title"]
    rec.update(context=ex["context"], question=ex["question"], answers=ex["answers"])
    return rec
