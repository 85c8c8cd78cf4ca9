"""Tables of the assistant solution: assistants, assistant_sessions, assistant_turns, assistant_feedback.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tuneforge.store.db

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('assistants',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('storage_key', sa.String(length=255), nullable=False),
    sa.Column('intent_model', sa.String(length=255), nullable=True),
    sa.Column('encoder', sa.String(length=255), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('passages', sa.Integer(), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_assistants_tenant_created', 'assistants', ['tenant_id', 'created_at'], unique=False)
    op.create_table('assistant_sessions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('assistant_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['assistant_id'], ['assistants.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_assistant_sessions_assistant_id'), 'assistant_sessions', ['assistant_id'], unique=False)
    op.create_index('ix_assistant_sessions_tenant_created', 'assistant_sessions', ['tenant_id', 'created_at'],
                    unique=False)
    op.create_table('assistant_turns',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('session_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('reply', sa.JSON(), nullable=True),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['assistant_sessions.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('session_id', 'seq', name='uq_assistant_turns_session_seq')
    )
    op.create_index(op.f('ix_assistant_turns_tenant_id'), 'assistant_turns', ['tenant_id'], unique=False)
    op.create_table('assistant_feedback',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('assistant_id', sa.String(length=40), nullable=False),
    sa.Column('session_id', sa.String(length=40), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('reply', sa.Text(), nullable=True),
    sa.Column('intent', sa.String(length=255), nullable=True),
    sa.Column('helpful', sa.Boolean(), nullable=False),
    sa.Column('correct_intent', sa.String(length=255), nullable=True),
    sa.Column('correct_answer', sa.Text(), nullable=True),
    sa.Column('created_at', tuneforge.store.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['assistant_id'], ['assistants.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['assistant_sessions.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_assistant_feedback_assistant_id'), 'assistant_feedback', ['assistant_id'], unique=False)
    op.create_index('ix_assistant_feedback_tenant_created', 'assistant_feedback', ['tenant_id', 'created_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_table('assistant_feedback')
    op.drop_table('assistant_turns')
    op.drop_table('assistant_sessions')
    op.drop_table('assistants')
