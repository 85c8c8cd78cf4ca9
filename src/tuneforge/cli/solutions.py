"""``tuneforge solution ...``: the ready-made solutions' command groups, registered on the main app."""

from __future__ import annotations

import typer

from tuneforge.solutions.assistant.cli import app as assistant_app
from tuneforge.solutions.monitor.cli import app as monitor_app
from tuneforge.solutions.recommender.cli import app as recommender_app

solution_app = typer.Typer(no_args_is_help=True, help=(
    "Ready-made solutions: a customer-service assistant, a financial-news sentiment monitor with alerts and a "
    "text recommender."))
solution_app.add_typer(assistant_app, name="assistant",
                       help="Customer-service assistant: answers from a knowledge base, hands over to a human.")
solution_app.add_typer(monitor_app, name="monitor",
                       help="Finance news sentiment monitor: ingest, classify, alert when sentiment turns.")
solution_app.add_typer(recommender_app, name="recommender",
                       help="Text recommender: recommend items from their text and a user's history.")


def register(app: typer.Typer) -> None:
    app.add_typer(solution_app, name="solution")
