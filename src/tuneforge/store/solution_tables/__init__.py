"""The solutions' tables. Imported at the end of :mod:`tuneforge.store.models`, so they are on ``Base.metadata``
for Alembic and the migration test. Modules here import only ``Base`` and column types from the store, nothing
from ``tuneforge.store.repositories``."""

from tuneforge.store.solution_tables import assistant, monitor, recommender  # noqa: F401
