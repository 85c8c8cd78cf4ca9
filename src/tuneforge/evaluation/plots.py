"""Figures for evaluation reports (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_confusion_matrix", "plot_per_class_f1", "plot_reliability"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cjk_font() -> None:
    # Use a font with CJK glyphs when one is installed, so Chinese labels do not render as boxes.
    from matplotlib import font_manager, rcParams

    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "SimHei", "Source Han Sans SC"):
        if name in names:
            rcParams["font.sans-serif"] = [name, *rcParams["font.sans-serif"]]
            break


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path, *, title: str) -> Path:
    """A row-normalized confusion matrix (rows: reference, columns: prediction); counts shown when it is small."""
    import numpy as np

    plt = _plt()
    _cjk_font()
    m = np.asarray(matrix, dtype=float)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    size = min(4 + 0.28 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    fs = 10 if n <= 20 else max(4, 10 - n // 15)
    ax.set_xticklabels(labels, rotation=90, fontsize=fs)
    ax.set_yticklabels(labels, fontsize=fs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center",
                            color="white" if norm[i, j] > 0.5 else "black", fontsize=fs)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the reference class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_per_class_f1(per_class: dict[str, dict[str, float]], path: Path, *, title: str) -> Path:
    """Horizontal bars of F1 per class (or entity type), worst first."""
    plt = _plt()
    _cjk_font()
    items = sorted(per_class.items(), key=lambda kv: kv[1]["f1"])
    n = len(items)
    fig, ax = plt.subplots(figsize=(7, min(2 + 0.25 * n, 30)))
    ax.barh([k for k, _ in items], [v["f1"] for _, v in items], color="#4C72B0")
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=10 if n <= 30 else 6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reliability(series: dict[str, dict[str, Any]], path: Path, *, title: str) -> Path:
    """A reliability diagram: the accuracy of each confidence bin against its mean confidence, one line per
    series (before and after calibration), over the diagonal of perfect calibration; the bars below show how many
    predictions fell in each bin. ``series`` maps a name to its bins (``edges``, ``confidence``, ``accuracy``,
    ``count``)."""
    plt = _plt()
    fig, (ax, bars) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    for k, (name, bins) in enumerate(series.items()):
        pts = [(c, a) for c, a in zip(bins["confidence"], bins["accuracy"], strict=True) if c is not None]
        ax.plot([c for c, _ in pts], [a for _, a in pts], marker="o", label=name)
        edges = bins["edges"]
        width = (edges[1] - edges[0]) / (len(series) + 1)
        bars.bar([e + width * (k + 0.5) for e in edges[:-1]], bins["count"], width=width, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    bars.set_xlabel("confidence (score of the predicted class)")
    bars.set_ylabel("predictions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
