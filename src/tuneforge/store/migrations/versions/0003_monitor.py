"""Tables of the monitor solution: watch-list, sources, items, mentions (the time series), alert rules, alerts.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tuneforge.store.db

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('monitor_items',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=True),
    sa.Column('guid', sa.String(length=500), nullable=True),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('text_hash', sa.String(length=64), nullable=False),
    sa.Column('lang', sa.String(length=8), nullable=False),
    sa.Column('published_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('polarity', sa.String(length=8), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=True),
    sa.Column('entities', sa.JSON(), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'text_hash', name='uq_monitor_items_hash')
    )
    op.create_index('ix_monitor_items_tenant_created', 'monitor_items', ['tenant_id', 'created_at'], unique=False)
    op.create_index('ix_monitor_items_tenant_published', 'monitor_items', ['tenant_id', 'published_at'], unique=False)
    op.create_table('monitor_rules',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('entity', sa.String(length=100), nullable=False),
    sa.Column('metric', sa.String(length=32), nullable=False),
    sa.Column('window_minutes', sa.Integer(), nullable=False),
    sa.Column('baseline_minutes', sa.Integer(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('min_items', sa.Integer(), nullable=False),
    sa.Column('min_increase', sa.Float(), nullable=False),
    sa.Column('cooldown_minutes', sa.Integer(), nullable=False),
    sa.Column('webhook_url', sa.String(length=2000), nullable=True),
    sa.Column('webhook_secret', sa.String(length=200), nullable=True),
    sa.Column('emails', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_monitor_rules_tenant_id'), 'monitor_rules', ['tenant_id'], unique=False)
    op.create_table('monitor_sources',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('interval_s', sa.Integer(), nullable=False),
    sa.Column('etag', sa.String(length=255), nullable=True),
    sa.Column('last_modified', sa.String(length=64), nullable=True),
    sa.Column('last_polled_at', tuneforge.store.db.UTCDateTime(), nullable=True),
    sa.Column('last_status', sa.String(length=200), nullable=True),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_monitor_sources_tenant_id'), 'monitor_sources', ['tenant_id'], unique=False)
    op.create_table('monitor_watch',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('aliases', sa.JSON(), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'name', name='uq_monitor_watch_name')
    )
    op.create_index(op.f('ix_monitor_watch_tenant_id'), 'monitor_watch', ['tenant_id'], unique=False)
    op.create_table('monitor_alerts',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('rule_id', sa.String(length=40), nullable=False),
    sa.Column('entity', sa.String(length=100), nullable=False),
    sa.Column('metric', sa.String(length=32), nullable=False),
    sa.Column('at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('expected', sa.Float(), nullable=False),
    sa.Column('z', sa.Float(), nullable=False),
    sa.Column('window_items', sa.Integer(), nullable=False),
    sa.Column('item_ids', sa.JSON(), nullable=False),
    sa.Column('deliveries', sa.JSON(), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['rule_id'], ['monitor_rules.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_monitor_alerts_rule_entity', 'monitor_alerts', ['rule_id', 'entity', 'at'], unique=False)
    op.create_index('ix_monitor_alerts_tenant_created', 'monitor_alerts', ['tenant_id', 'created_at'], unique=False)
    op.create_table('monitor_mentions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('item_id', sa.String(length=40), nullable=False),
    sa.Column('entity', sa.String(length=100), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=True),
    sa.Column('published_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.Column('polarity', sa.String(length=8), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['monitor_items.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_monitor_mentions_entity', 'monitor_mentions', ['tenant_id', 'entity', 'published_at'],
                    unique=False)
    op.create_index(op.f('ix_monitor_mentions_item_id'), 'monitor_mentions', ['item_id'], unique=False)
    op.create_index('ix_monitor_mentions_topic', 'monitor_mentions', ['tenant_id', 'topic', 'published_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_monitor_mentions_topic', table_name='monitor_mentions')
    op.drop_index(op.f('ix_monitor_mentions_item_id'), table_name='monitor_mentions')
    op.drop_index('ix_monitor_mentions_entity', table_name='monitor_mentions')
    op.drop_table('monitor_mentions')
    op.drop_index('ix_monitor_alerts_tenant_created', table_name='monitor_alerts')
    op.drop_index('ix_monitor_alerts_rule_entity', table_name='monitor_alerts')
    op.drop_table('monitor_alerts')
    op.drop_index(op.f('ix_monitor_watch_tenant_id'), table_name='monitor_watch')
    op.drop_table('monitor_watch')
    op.drop_index(op.f('ix_monitor_sources_tenant_id'), table_name='monitor_sources')
    op.drop_table('monitor_sources')
    op.drop_index(op.f('ix_monitor_rules_tenant_id'), table_name='monitor_rules')
    op.drop_table('monitor_rules')
    op.drop_index('ix_monitor_items_tenant_published', table_name='monitor_items')
    op.drop_index('ix_monitor_items_tenant_created', table_name='monitor_items')
    op.drop_table('monitor_items')
