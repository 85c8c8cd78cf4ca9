"""The tables declared in Python are exactly the schema the migrations build, on SQLite and PostgreSQL.

Alembic's autogenerate comparison is the first check; the reflected foreign keys (with their ``ON DELETE``),
indexes, unique constraints and column nullability are compared too, so a changed option that the comparison
does not report on some backend still fails here.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from tuneforge.store.base import TenantScoped
from tuneforge.store.db import make_engine, upgrade
from tuneforge.store.tables import Base, metadata


def _migrated(db_url: str) -> Engine:
    engine = make_engine(db_url)
    upgrade(engine)
    return engine


def _reflected(engine: Engine, table: str) -> dict[str, object]:
    insp = inspect(engine)
    return {
        "columns": {(c["name"], bool(c["nullable"])) for c in insp.get_columns(table)},
        "foreign_keys": {(tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]),
                          (fk.get("options") or {}).get("ondelete")) for fk in insp.get_foreign_keys(table)},
        "indexes": {(ix["name"], tuple(ix["column_names"]), bool(ix["unique"])) for ix in insp.get_indexes(table)
                    if not ix.get("duplicates_constraint")},
        "unique": {tuple(sorted(uq["column_names"])) for uq in insp.get_unique_constraints(table)},
    }


def _declared(table_name: str) -> dict[str, object]:
    t = metadata.tables[table_name]
    unique = {tuple(sorted(c.name for c in uq.columns)) for uq in t.constraints
              if type(uq).__name__ == "UniqueConstraint"}
    unique |= {(c.name,) for c in t.columns if c.unique}
    return {
        "columns": {(c.name, bool(c.nullable)) for c in t.columns},
        "foreign_keys": {(tuple(c.name for c in fk.columns), fk.referred_table.name,
                          tuple(e.column.name for e in fk.elements), fk.ondelete) for fk in t.foreign_key_constraints},
        "indexes": {(ix.name, tuple(c.name for c in ix.columns), bool(ix.unique)) for ix in t.indexes},
        "unique": unique,
    }


def test_autogenerate_finds_no_difference_between_the_migrations_and_the_tables(db_url):
    engine = _migrated(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, metadata)
        assert diff == [], f"tables and migrations differ: {diff}"
        assert set(inspect(engine).get_table_names()) - {"alembic_version"} == set(metadata.tables)
    finally:
        engine.dispose()


def test_reflected_keys_indexes_and_constraints_are_the_declared_ones(db_url):
    engine = _migrated(db_url)
    try:
        for name in sorted(metadata.tables):
            reflected, declared = _reflected(engine, name), _declared(name)
            assert reflected == declared, f"table {name}: migrated {reflected} != declared {declared}"
    finally:
        engine.dispose()


def test_every_tenant_owned_table_gets_its_tenant_column_from_the_mixin():
    owned = {m.local_table.name: m.class_ for m in Base.registry.mappers if "tenant_id" in m.local_table.c}
    assert len(owned) == 25
    for name, cls in owned.items():
        assert issubclass(cls, TenantScoped), f"{cls.__name__} declares tenant_id itself"
        (fk,) = metadata.tables[name].c.tenant_id.foreign_keys
        assert (fk.target_fullname, fk.ondelete) == ("tenants.id", "CASCADE")
        assert metadata.tables[name].c.tenant_id.nullable is False
    # the tables that asked for the single-column index have it, and only those
    indexed = {n for n, cls in owned.items() if cls.tenant_index}
    assert indexed == {n for n in owned if any(ix.name == f"ix_{n}_tenant_id" for ix in metadata.tables[n].indexes)}
    assert {"api_keys", "usage", "assistant_turns", "monitor_watch", "recommender_events"} <= indexed
    assert "files" not in indexed
