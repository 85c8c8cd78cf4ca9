"""Splitting one labelled file into simulated silos: IID (a seeded shuffle dealt round-robin) or by label skew
(a Dirichlet(alpha) share of each class per client, the split of Hsu et al. 2019, *Measuring the effects of
non-identical data distribution for federated visual classification*), and how skewed a split is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuneforge.errors import ConfigError

__all__ = ["SplitSpec", "label_skew", "parse_split", "split_dirichlet", "split_iid", "split_indices"]


@dataclass(frozen=True)
class SplitSpec:
    """``iid`` or ``dirichlet`` with its concentration ``alpha`` (smaller: each client holds fewer classes)."""

    kind: str
    alpha: float | None = None

    def __str__(self) -> str:
        return self.kind if self.alpha is None else f"{self.kind}:{self.alpha:g}"


def parse_split(text: str) -> SplitSpec:
    """``iid`` or ``dirichlet:ALPHA`` (ALPHA a positive number); a ConfigError naming ``split`` otherwise."""
    spec = text.strip().lower()
    if spec == "iid":
        return SplitSpec("iid")
    if spec.startswith("dirichlet"):
        _, _, value = spec.partition(":")
        try:
            alpha = float(value)
        except ValueError:
            alpha = -1.0
        if alpha > 0 and np.isfinite(alpha):
            return SplitSpec("dirichlet", alpha)
        raise ConfigError(f"split: {text!r} needs a positive concentration, e.g. dirichlet:0.5",
                          hint="Smaller alpha gives each client fewer classes (0.1 strong skew, 100 nearly IID).")
    raise ConfigError(f"split: unknown split {text!r} (choose iid or dirichlet:ALPHA)")


def split_iid(n: int, clients: int, *, seed: int) -> list[list[int]]:
    """Indices ``0..n-1`` shuffled with ``seed`` and dealt to ``clients`` silos of (nearly) equal size."""
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(int(i) for i in order[c::clients]) for c in range(clients)]


def split_dirichlet(labels: Sequence[str], clients: int, *, alpha: float, seed: int,
                    min_size: int = 1, tries: int = 100) -> list[list[int]]:
    """Each class's examples divided among ``clients`` by shares drawn from Dirichlet(``alpha``); redrawn (same
    seed stream) until every client holds at least ``min_size`` examples. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    silos: list[list[int]] = [[] for _ in range(clients)]
    for _ in range(tries):
        silos = [[] for _ in range(clients)]
        for lab in sorted(by_class):
            idx = np.array(by_class[lab])
            rng.shuffle(idx)
            shares = rng.dirichlet([alpha] * clients)
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for c, part in enumerate(np.split(idx, cuts)):
                silos[c].extend(int(i) for i in part)
        if min(len(s) for s in silos) >= min_size:
            break
    else:
        raise ConfigError(f"split: dirichlet:{alpha:g} left a client with fewer than {min_size} examples in "
                          f"{tries} draws ({len(labels)} examples, {clients} clients)",
                          hint="Use fewer --clients, a larger alpha, or more data.")
    return [sorted(s) for s in silos]


def split_indices(labels: Sequence[str], spec: SplitSpec, clients: int, *, seed: int) -> list[list[int]]:
    """The silos of a split (lists of example indices)."""
    if clients < 1:
        raise ConfigError("clients: must be at least 1")
    if clients > len(labels):
        raise ConfigError(f"clients: {clients} clients for {len(labels)} examples; each client needs data",
                          hint="Use fewer --clients.")
    if spec.kind == "iid":
        return split_iid(len(labels), clients, seed=seed)
    assert spec.alpha is not None
    return split_dirichlet(labels, clients, alpha=spec.alpha, seed=seed)


def label_skew(silo_labels: Sequence[Sequence[str]]) -> dict[str, float]:
    """How far the silos' label distributions are from the union's: the mean and largest total-variation distance
    (0: every silo like the union; 1: disjoint), and the mean share of the classes a silo holds at all."""
    classes = sorted({lab for silo in silo_labels for lab in silo})
    if not classes:
        return {"mean_tv_distance": 0.0, "max_tv_distance": 0.0, "mean_class_coverage": 0.0}
    pos = {c: i for i, c in enumerate(classes)}

    def dist(silo: Sequence[str]) -> np.ndarray:
        v = np.zeros(len(classes))
        for lab in silo:
            v[pos[lab]] += 1
        return v / max(1.0, v.sum())

    union = dist([lab for silo in silo_labels for lab in silo])
    tv = [0.5 * float(np.abs(dist(s) - union).sum()) for s in silo_labels]
    coverage = [len(set(s)) / len(classes) for s in silo_labels]
    return {"mean_tv_distance": round(float(np.mean(tv)), 4), "max_tv_distance": round(max(tv), 4),
            "mean_class_coverage": round(float(np.mean(coverage)), 4)}
