"""fine_tuning_jobs.method: the job's OpenAI fine-tuning method type (``supervised`` or ``dpo``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('fine_tuning_jobs') as batch:
        batch.add_column(sa.Column('method', sa.String(16), server_default='supervised', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('fine_tuning_jobs') as batch:
        batch.drop_column('method')
