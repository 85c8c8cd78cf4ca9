"""Ready-made solutions built from TuneForge's own parts (fine-tuned models, inference, store, API).

- :mod:`tuneforge.solutions.assistant` — answers customer messages from a knowledge base and past tickets,
  hands over to a human when unsure;
- :mod:`tuneforge.solutions.monitor` — sentiment of financial news and social text per company and topic,
  with alerts when sentiment turns;
- :mod:`tuneforge.solutions.recommender` — recommends items from their text and a user's history.

Each has a Typer command group (``tuneforge solution ...``, in its ``cli.py``), API routes
(``tuneforge.api.routers``), a console page and tables (``tuneforge.store.solution_tables``).
"""
