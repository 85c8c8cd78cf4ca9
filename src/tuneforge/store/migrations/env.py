"""Alembic environment: runs on the connection handed over by ``tuneforge.store.db.upgrade``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from tuneforge.store.tables import metadata as target_metadata

config = context.config


def run() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        context.run_migrations()
        return
    # `alembic` on the command line (developers writing a new migration)
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as c:
        context.configure(connection=c, target_metadata=target_metadata, render_as_batch=True)
        context.run_migrations()


run()
