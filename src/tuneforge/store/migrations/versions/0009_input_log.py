"""Live-input monitoring: model_monitoring (opt-in per model), input_log (sampled inputs and predictions),
drift_alerts.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tuneforge.store.db

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('model_monitoring',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('model_id', sa.String(length=255), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('sample_rate', sa.Float(), nullable=False),
    sa.Column('retention', sa.Integer(), nullable=False),
    sa.Column('mask_pii', sa.Boolean(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=True),
    sa.Column('webhook_url', sa.String(length=2000), nullable=True),
    sa.Column('webhook_secret', sa.String(length=200), nullable=True),
    sa.Column('alert_cooldown_minutes', sa.Integer(), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'model_id', name='uq_model_monitoring_model')
    )
    op.create_table('input_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model_id', sa.String(length=255), nullable=False),
    sa.Column('served_by', sa.String(length=255), nullable=False),
    sa.Column('input', sa.JSON(), nullable=False),
    sa.Column('prediction', sa.JSON(), nullable=False),
    sa.Column('masked', sa.Boolean(), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_input_log_model', 'input_log', ['tenant_id', 'model_id', 'id'], unique=False)
    op.create_table('drift_alerts',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('model_id', sa.String(length=255), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('method', sa.String(length=64), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('window', sa.Integer(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('deliveries', sa.JSON(), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_drift_alerts_model', 'drift_alerts', ['tenant_id', 'model_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_drift_alerts_model', table_name='drift_alerts')
    op.drop_table('drift_alerts')
    op.drop_index('ix_input_log_model', table_name='input_log')
    op.drop_table('input_log')
    op.drop_table('model_monitoring')
