"""Initial schema: plans, tenants, API keys, files, fine-tuning jobs (the queue), events, checkpoints,
models, the usage ledger and idempotency keys.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-29 09:07:28.471528
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tuneforge.store.db

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('plans',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('max_concurrent_jobs', sa.Integer(), nullable=False),
    sa.Column('trained_tokens_per_month', sa.BigInteger(), nullable=False),
    sa.Column('requests_per_minute', sa.Integer(), nullable=False),
    sa.Column('storage_bytes', sa.BigInteger(), nullable=False),
    sa.Column('trial_days', sa.Integer(), nullable=True),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('tenants',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('plan_name', sa.String(length=32), nullable=False),
    sa.Column('trial_ends_at', tuneforge.store.db.UTCDateTime(), nullable=True),
    sa.Column('q_max_concurrent_jobs', sa.Integer(), nullable=True),
    sa.Column('q_trained_tokens_per_month', sa.BigInteger(), nullable=True),
    sa.Column('q_requests_per_minute', sa.Integer(), nullable=True),
    sa.Column('q_storage_bytes', sa.BigInteger(), nullable=True),
    sa.Column('disabled_at', tuneforge.store.db.UTCDateTime(), nullable=True),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['plan_name'], ['plans.name'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.String(length=100), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', tuneforge.store.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('secret_hash')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('files',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('storage_key', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.create_index('ix_files_tenant_created', ['tenant_id', 'created_at'], unique=False)

    op.create_table('fine_tuning_jobs',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('base_model', sa.String(length=255), nullable=False),
    sa.Column('task', sa.String(length=32), nullable=False),
    sa.Column('training_file_id', sa.String(length=40), nullable=False),
    sa.Column('validation_file_id', sa.String(length=40), nullable=True),
    sa.Column('suffix', sa.String(length=64), nullable=True),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('hyperparameters', sa.JSON(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('error_param', sa.String(length=64), nullable=True),
    sa.Column('fine_tuned_model', sa.String(length=255), nullable=True),
    sa.Column('estimated_tokens', sa.BigInteger(), nullable=True),
    sa.Column('trained_tokens', sa.BigInteger(), nullable=True),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.Column('validated_at', tuneforge.store.db.UTCDateTime(), nullable=True),
    sa.Column('started_at', tuneforge.store.db.UTCDateTime(), nullable=True),
    sa.Column('finished_at', tuneforge.store.db.UTCDateTime(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.String(length=120), nullable=True),
    sa.Column('lease_expires_at', tuneforge.store.db.UTCDateTime(), nullable=True),
    sa.Column('heartbeat_at', tuneforge.store.db.UTCDateTime(), nullable=True),
    sa.Column('control', sa.String(length=16), nullable=True),
    sa.Column('run_after', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('fine_tuning_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_claim', ['status', 'run_after'], unique=False)
        batch_op.create_index('ix_jobs_tenant_created', ['tenant_id', 'created_at'], unique=False)

    op.create_table('idempotency_keys',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('endpoint', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('response', sa.JSON(), nullable=True),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'key', name='uq_idempotency_tenant_key')
    )
    op.create_table('models',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('base_model', sa.String(length=255), nullable=False),
    sa.Column('task', sa.String(length=32), nullable=False),
    sa.Column('storage_key', sa.String(length=255), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index('ix_models_tenant_created', ['tenant_id', 'created_at'], unique=False)

    op.create_table('usage',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('model', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('period_start', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'model', 'kind', 'period_start', name='uq_usage_bucket')
    )
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_usage_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('fine_tuning_checkpoints',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['fine_tuning_jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'step', name='uq_checkpoint_job_step')
    )
    with op.batch_alter_table('fine_tuning_checkpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fine_tuning_checkpoints_job_id'), ['job_id'], unique=False)

    op.create_table('fine_tuning_job_events',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('level', sa.String(length=8), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['fine_tuning_jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id')
    )
    with op.batch_alter_table('fine_tuning_job_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fine_tuning_job_events_job_id'), ['job_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('fine_tuning_job_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fine_tuning_job_events_job_id'))

    op.drop_table('fine_tuning_job_events')
    with op.batch_alter_table('fine_tuning_checkpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fine_tuning_checkpoints_job_id'))

    op.drop_table('fine_tuning_checkpoints')
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_usage_tenant_id'))

    op.drop_table('usage')
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_index('ix_models_tenant_created')

    op.drop_table('models')
    op.drop_table('idempotency_keys')
    with op.batch_alter_table('fine_tuning_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_tenant_created')
        batch_op.drop_index('ix_jobs_claim')

    op.drop_table('fine_tuning_jobs')
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index('ix_files_tenant_created')

    op.drop_table('files')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_tenant_id'))

    op.drop_table('api_keys')
    op.drop_table('tenants')
    op.drop_table('plans')
