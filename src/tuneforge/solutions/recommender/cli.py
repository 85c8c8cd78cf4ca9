"""``tuneforge solution recommender ...``: thin commands over :mod:`tuneforge.solutions.recommender`."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True,
                  help="The text recommender: train on interactions, recommend for a user, similar items.")
