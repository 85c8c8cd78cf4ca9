"""plans.tokens_per_minute and tenants.q_tokens_per_minute: the token rate limit of chat and completions.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

#: the default plans' limits (tuneforge.store.tenants.DEFAULT_PLANS); another plan gets the trial's
LIMITS = {"trial": 40_000, "starter": 400_000, "pro": 2_000_000}


def upgrade() -> None:
    with op.batch_alter_table('plans') as batch:
        batch.add_column(sa.Column('tokens_per_minute', sa.Integer(), server_default=str(LIMITS["trial"]),
                                   nullable=False))
    with op.batch_alter_table('tenants') as batch:
        batch.add_column(sa.Column('q_tokens_per_minute', sa.Integer(), nullable=True))
    plans = sa.table('plans', sa.column('name', sa.String), sa.column('tokens_per_minute', sa.Integer))
    for name, limit in LIMITS.items():
        op.execute(plans.update().where(plans.c.name == name).values(tokens_per_minute=limit))


def downgrade() -> None:
    with op.batch_alter_table('tenants') as batch:
        batch.drop_column('q_tokens_per_minute')
    with op.batch_alter_table('plans') as batch:
        batch.drop_column('tokens_per_minute')
