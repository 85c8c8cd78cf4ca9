"""The migrations build exactly the schema of the models, and upgrading twice is harmless."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from tuneforge.store.db import current_revision, make_engine, upgrade
from tuneforge.store.tables import metadata


def test_migrations_match_the_models_and_upgrade_is_idempotent(db_url):
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        head = current_revision(engine)
        assert head is not None
        upgrade(engine)  # a second start changes nothing
        assert current_revision(engine) == head
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        tables = set(inspect(engine).get_table_names())
        assert {"tenants", "api_keys", "files", "fine_tuning_jobs", "fine_tuning_job_events",
                "fine_tuning_checkpoints", "models", "usage", "idempotency_keys", "plans"} <= tables
    finally:
        engine.dispose()


def test_migrations_ship_inside_the_package():
    from tuneforge.store.db import MIGRATIONS

    assert (MIGRATIONS / "env.py").exists()
    assert list((MIGRATIONS / "versions").glob("0001_*.py"))
