"""Charts of sentiment over time: a PNG (matplotlib, Agg backend) and a console text table."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

__all__ = ["series_png", "series_text"]


def series_png(series: Sequence[dict[str, Any]], *, title: str = "", alerts: Sequence[datetime] = (),
               width: float = 9.0, height: float = 4.5) -> bytes:
    """PNG bytes: mean sentiment score and negative share (top) over item counts (bottom); alerts as red lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [datetime.fromisoformat(p["start"]) for p in series]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(width, height),
                                      gridspec_kw={"height_ratios": [2, 1]})
    try:
        score = [p["mean_score"] if p["mean_score"] is not None else float("nan") for p in series]
        neg = [p["negative_share"] if p["negative_share"] is not None else float("nan") for p in series]
        top.plot(xs, score, color="#1f6feb", marker=".", label="mean score (-1 … 1)")
        top.plot(xs, neg, color="#cf222e", marker=".", linestyle="--", label="negative share")
        top.axhline(0, color="#888", linewidth=0.6)
        top.set_ylim(-1.05, 1.05)
        top.legend(loc="lower left", fontsize=8)
        top.set_title(title or "Sentiment over time")
        width_days = (xs[1] - xs[0]).total_seconds() / 86400 * 0.8 if len(xs) > 1 else 0.03
        bottom.bar(xs, [p["count"] for p in series], width=width_days, color="#6e7781")
        bottom.set_ylabel("items")
        for at in alerts:
            for ax in (top, bottom):
                ax.axvline(at, color="#cf222e", alpha=0.5, linewidth=1.2)
        fig.autofmt_xdate()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
    finally:
        plt.close(fig)
    return buf.getvalue()


def series_text(series: Sequence[dict[str, Any]], *, width: int = 30) -> list[tuple[str, str, str, str]]:
    """Rows (bucket, items, negative share, a bar of the mean score) for a console table."""
    rows = []
    for p in series:
        s = p["mean_score"]
        if s is None:
            bar = ""
        else:
            n = round(abs(s) * width / 2)
            bar = (" " * (width // 2 - n) + "█" * n + "|") if s < 0 else (" " * (width // 2) + "|" + "█" * n)
        share = "" if p["negative_share"] is None else f"{p['negative_share']:.0%}"
        rows.append((p["start"][:16].replace("T", " "), str(p["count"]), share, bar))
    return rows
