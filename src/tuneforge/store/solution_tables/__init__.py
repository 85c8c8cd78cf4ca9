"""The solutions' tables, one module per solution; :mod:`tuneforge.store.tables` gathers them with the core
tables for Alembic. Modules here import only the store's base and column types, nothing from the repositories.

Importing this package registers the core tables too (:mod:`tuneforge.store.models`): the solutions' foreign keys
point at ``tenants``, which must be on the same metadata.
"""

from tuneforge.store import models  # noqa: F401
