"""``tuneforge solution assistant ...``: thin commands over :mod:`tuneforge.solutions.customer_service`."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True,
                  help="The customer-service assistant: import a knowledge base, train, ask, feedback.")
