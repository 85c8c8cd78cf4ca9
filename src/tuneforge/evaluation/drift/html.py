"""The drift report as one self-contained HTML page (no script, no external file): the verdict, every check
with its flag, and the predicted-label shares of the reference and the window side by side."""

from __future__ import annotations

from typing import Any

from tuneforge.evaluation.drift.report import DriftReport

__all__ = ["render_html"]

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: {{ run }}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#111}
h1{font-size:1.4rem} table{border-collapse:collapse;margin:1rem 0} td,th{padding:.3rem .7rem;
border-bottom:1px solid #ddd;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.verdict{padding:.8rem 1rem;border-radius:6px;font-weight:600}
.drift{background:#fde2e1;color:#8a1c14} .ok{background:#dcf5e3;color:#14532d}
.bar{display:inline-block;height:.8rem;background:#2563eb;vertical-align:middle}
.bar.cur{background:#f97316} small{color:#555}
</style></head><body>
<h1>Drift report: {{ run }}</h1>
<p class="verdict {{ 'drift' if r.drift else 'ok' }}">{{ 'Drift' if r.drift else 'No drift' }}:
{{ r.method }} = {{ '%.3f' % r.score }} (threshold {{ r.threshold }})</p>
<p><small>{{ sizes.current }} inputs in the window against {{ sizes.reference }} reference examples
(sampled from {{ sizes.reference_total }}{% if reference %}, {{ reference }}{% endif %}).
The domain classifier's ROC AUC is 0.5 when the window cannot be told from the reference.</small></p>
<h2>Checks</h2>
<table><tr><th>check</th><th>value</th><th>threshold</th><th>flag</th></tr>
{% for c in checks %}<tr><td>{{ c.name }}</td><td class="n">{{ fmt(c.value) }}</td>
<td class="n">{{ c.threshold }}</td><td>{{ 'drift' if c.drift else ('-' if c.drift is none else 'ok') }}</td></tr>
{% endfor %}</table>
{% if preds %}<h2>Predicted labels</h2>
<table><tr><th>label</th><th>reference</th><th></th><th>window</th><th></th></tr>
{% for label, share in preds.reference_shares.items() %}{% set cur = preds.current_shares[label] %}
<tr><td>{{ label }}</td><td class="n">{{ '%.1f%%' % (100 * share) }}</td>
<td><span class="bar" style="width:{{ (200 * share)|round|int }}px"></span></td>
<td class="n">{{ '%.1f%%' % (100 * cur) }}</td>
<td><span class="bar cur" style="width:{{ (200 * cur)|round|int }}px"></span></td></tr>
{% endfor %}</table>
<p>Mean confidence: {{ '%.3f' % preds.reference_mean_confidence }} on the reference,
{{ '%.3f' % preds.current_mean_confidence }} on the window.</p>{% endif %}
<h2>Vocabulary</h2>
<p>Words the reference never has: {{ pct(vocab.unseen_word_rate) }} of the window's words
({{ pct(vocab.unseen_word_rate_baseline) }} for held-out reference text).
Unknown tokens: {{ pct(vocab.current_unk_token_rate) }} (reference {{ pct(vocab.reference_unk_token_rate) }}).</p>
</body></html>
"""


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def render_html(report: DriftReport, *, run: str, reference: str | None = None) -> str:
    from jinja2 import Environment

    env = Environment(autoescape=True)
    d = report.details
    return env.from_string(_TEMPLATE).render(r=report, run=run, reference=reference, sizes=d["sizes"],
                                             checks=d["checks"], preds=d.get("predictions"),
                                             vocab=d["vocabulary"], fmt=_fmt, pct=_pct)
