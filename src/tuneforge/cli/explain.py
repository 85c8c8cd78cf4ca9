"""``tuneforge explain``: why a run predicted what it did, word by word (integrated gradients,
:mod:`tuneforge.evaluation.explain`)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tuneforge.cli.options import offline, out

__all__ = ["explain", "render_html"]

#: the colours of a word that speaks for the explained label, and against it (RGB)
_FOR = (22, 163, 74)
_AGAINST = (220, 38, 38)


def explain(
    run: Annotated[Path, typer.Argument(help="A trained classification or NER model folder (the --output of train).")],
    text: Annotated[str, typer.Argument(help="The text to explain.")],
    label: Annotated[str | None, typer.Option(
        "--label", help="Explain this label (NER: this entity type) instead of the predicted one.")] = None,
    text_pair: Annotated[str | None, typer.Option(help="The second text of a sentence pair.")] = None,
    json_: Annotated[bool, typer.Option("--json", help='Print {"label", "score", "attributions": [{"token", '
                                                       '"score"}, ...], "convergence_delta"} (NER: a list, one '
                                                       'entry per entity).')] = False,
    html_file: Annotated[Path | None, typer.Option("--html", help="Also write the highlighted text as an HTML "
                                                                  "page to this file.")] = None,
    steps: Annotated[int, typer.Option(min=1, max=1000, help="Integration steps: more, a smaller convergence "
                                                             "delta, and proportionally slower.")] = 50,
) -> None:
    """Explain a prediction: each word's share of the predicted (or --label) label's logit by integrated
    gradients on the embedding layer (Captum). Green words speak for the label, red against it; the scores sum
    to the logit's difference from an all-padding input, up to the convergence delta."""
    offline()
    from tuneforge.cli.predict import check_run
    from tuneforge.evaluation.explain import explain as explain_inputs
    from tuneforge.inference import load_predictor

    check_run(run)
    predictor = load_predictor(run)
    item: str | dict[str, Any] = text if text_pair is None else {"text": text, "text_pair": text_pair}
    [result] = explain_inputs(predictor, [item], label=label, steps=steps)
    per_entity = isinstance(result, list)
    explanations = result if per_entity else [result]
    if html_file is not None:
        from tuneforge.utils.fs import atomic_write_text

        atomic_write_text(html_file, render_html(text, explanations, text_pair=text_pair, run=run.name))
    if json_:
        obj: Any = [e.to_json(spans=False) for e in explanations] if per_entity else result.to_json(spans=False)
        typer.echo(json.dumps(obj, ensure_ascii=False))
        return
    _print(text, text_pair, explanations, per_entity=per_entity)
    if html_file is not None:
        out.print(f"Wrote {html_file}", highlight=False)


def _shade(score: float, scale: float) -> tuple[tuple[int, int, int], float]:
    strength = min(1.0, abs(score) / scale) if scale > 0 else 0.0
    return (_FOR if score >= 0 else _AGAINST), strength


def _scale(explanation: Any) -> float:
    return max((abs(w.score) for w in explanation.attributions), default=0.0)


def _print(text: str, text_pair: str | None, explanations: list[Any], *, per_entity: bool) -> None:
    from rich.text import Text

    if per_entity and not explanations:
        out.print("No entity predicted in this text.", highlight=False)
        return
    for e in explanations:
        head = Text()
        if per_entity:
            head.append(f"{e.label} ", style="bold")
            head.append(repr(e.entity["text"]))
            head.append(f"  score {e.score:.3f}")
        else:
            head.append("label ", style="dim")
            head.append(e.label, style="bold")
            head.append(f"  probability {e.score:.3f}")
        out.print(head)
        scale = _scale(e)
        body = Text()
        for segment, source in ((0, text), (1, text_pair)):
            if source is None:
                continue
            if segment:
                body.append("  ‖  ", style="dim")
            at = 0
            for w in sorted((w for w in e.attributions if w.segment == segment), key=lambda w: w.start):
                body.append(source[at:w.start])
                (r, g, b), a = _shade(w.score, scale)
                mix = tuple(round(255 - (255 - c) * (0.25 + 0.75 * a)) if a > 0.02 else 255 for c in (r, g, b))
                body.append(source[w.start:w.end],
                            style=f"black on rgb({mix[0]},{mix[1]},{mix[2]})" if a > 0.02 else "")
                at = w.end
            body.append(source[at:])
        out.print(body)
        top = sorted(e.attributions, key=lambda w: -abs(w.score))[:5]
        out.print("  " + ", ".join(f"{w.token} {w.score:+.3f}" for w in top), highlight=False, style="dim")
        out.print(f"  convergence delta {e.convergence_delta:+.4f} ({e.steps} steps)", highlight=False, style="dim")
    legend = Text("legend: ")
    legend.append(" for the label ", style="black on rgb(22,163,74)")
    legend.append(" ")
    legend.append(" against it ", style="black on rgb(220,38,38)")
    out.print(legend)


def render_html(text: str, explanations: list[Any], *, text_pair: str | None = None, run: str = "") -> str:
    """A standalone HTML page of the highlighted text (one block per explanation), with a legend."""
    blocks = []
    for e in explanations:
        scale = _scale(e)
        title = (f"{html.escape(e.label)} “{html.escape(e.entity['text'])}” — score {e.score:.3f}" if e.entity
                 else f"{html.escape(e.label)} — probability {e.score:.3f}")
        parts = []
        for segment, source in ((0, text), (1, text_pair)):
            if source is None:
                continue
            if segment:
                parts.append(' <span class="sep">‖</span> ')
            at = 0
            for w in sorted((w for w in e.attributions if w.segment == segment), key=lambda w: w.start):
                parts.append(html.escape(source[at:w.start]))
                (r, g, b), a = _shade(w.score, scale)
                parts.append(f'<span class="w" style="background: rgba({r}, {g}, {b}, {0.08 + 0.72 * a:.3f})" '
                             f'title="{w.score:+.4f}">{html.escape(source[w.start:w.end])}</span>')
                at = w.end
            parts.append(html.escape(source[at:]))
        blocks.append(f'<section><h2>{title}</h2><p class="text">{"".join(parts)}</p>'
                      f'<p class="meta">convergence delta {e.convergence_delta:+.4f} ({e.steps} steps)</p></section>')
    if not blocks:
        blocks.append("<p>No entity predicted in this text.</p>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Explanation {html.escape(run)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 50rem; margin: 2rem auto; line-height: 1.8; }}
.w {{ padding: 0.1rem 0.15rem; border-radius: 0.2rem; color: #111; }}
.meta, .sep {{ color: #666; font-size: 0.9rem; }}
.legend span {{ padding: 0.1rem 0.4rem; border-radius: 0.2rem; }}
</style></head><body>
<h1>Why {html.escape(run)} predicted this</h1>
<p class="legend"><span style="background: rgba(22, 163, 74, 0.8)">for the label</span>
<span style="background: rgba(220, 38, 38, 0.8)">against it</span>
— each word's share of the label's logit (integrated gradients)</p>
{"".join(blocks)}
</body></html>
"""
