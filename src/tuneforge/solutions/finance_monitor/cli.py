"""``tuneforge solution monitor ...``: thin commands over :mod:`tuneforge.solutions.finance_monitor`."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True,
                  help="The financial-news sentiment monitor: ingest, classify, alert rules, charts.")
