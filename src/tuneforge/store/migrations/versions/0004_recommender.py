"""Tables of the recommender solution: recommenders, recommender_events.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tuneforge.store.db

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('recommenders',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('storage_key', sa.String(length=255), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_recommenders_tenant_created', 'recommenders', ['tenant_id', 'created_at'], unique=False)
    op.create_table('recommender_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('recommender_id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=False),
    sa.Column('item_id', sa.String(length=255), nullable=False),
    sa.Column('rating', sa.Float(), nullable=True),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['recommender_id'], ['recommenders.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_recommender_events_tenant_id'), 'recommender_events', ['tenant_id'], unique=False)
    op.create_index('ix_recommender_events_user', 'recommender_events', ['recommender_id', 'user_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_recommender_events_user', table_name='recommender_events')
    op.drop_index(op.f('ix_recommender_events_tenant_id'), table_name='recommender_events')
    op.drop_table('recommender_events')
    op.drop_index('ix_recommenders_tenant_created', table_name='recommenders')
    op.drop_table('recommenders')
