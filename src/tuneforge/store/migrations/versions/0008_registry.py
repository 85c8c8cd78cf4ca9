"""The model registry: registry_names, registry_versions, registry_aliases, registry_events.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import tuneforge.store.db

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def _owned(*columns: Any) -> list[Any]:
    """``columns`` then the tenant column and its foreign key (as TenantScoped declares them)."""
    return [*columns, sa.Column('tenant_id', sa.String(length=40), nullable=False),
            sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE')]


def _of_name() -> list[Any]:
    return [sa.Column('name_id', sa.String(length=40), nullable=False),
            sa.ForeignKeyConstraint(['name_id'], ['registry_names.id'], ondelete='CASCADE')]


def upgrade() -> None:
    op.create_table('registry_names', *_owned(
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('next_version', sa.Integer(), nullable=False),
        sa.Column('test_data_key', sa.String(length=255), nullable=True),
        sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False)),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('tenant_id', 'name', name='uq_registry_names_tenant_name'))
    op.create_table('registry_aliases', *_owned(
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('alias', sa.String(length=32), nullable=False),
        sa.Column('version', sa.Integer(), nullable=True),
        sa.Column('previous', sa.JSON(), nullable=False),
        sa.Column('updated_at', tuneforge.store.db.UTCDateTime(), nullable=False)), *_of_name(),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name_id', 'alias', name='uq_registry_aliases_name_alias'))
    op.create_table('registry_events', *_owned(
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('alias', sa.String(length=32), nullable=True),
        sa.Column('version', sa.Integer(), nullable=True),
        sa.Column('previous', sa.Integer(), nullable=True),
        sa.Column('actor', sa.String(length=255), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('metrics', sa.JSON(), nullable=False),
        sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False)), *_of_name(),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_registry_events_name', 'registry_events', ['name_id', 'id'], unique=False)
    op.create_table('registry_versions', *_owned(
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('storage_key', sa.String(length=255), nullable=False),
        sa.Column('train_data_key', sa.String(length=255), nullable=True),
        sa.Column('bytes', sa.BigInteger(), nullable=False),
        sa.Column('metrics', sa.JSON(), nullable=False),
        sa.Column('source', sa.String(length=255), nullable=False),
        sa.Column('parent', sa.Integer(), nullable=True),
        sa.Column('created_by', sa.String(length=255), nullable=False),
        sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False)), *_of_name(),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name_id', 'version', name='uq_registry_versions_name_version'))


def downgrade() -> None:
    op.drop_table('registry_versions')
    op.drop_index('ix_registry_events_name', table_name='registry_events')
    op.drop_table('registry_events')
    op.drop_table('registry_aliases')
    op.drop_table('registry_names')
