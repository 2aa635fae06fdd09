"""delivery timings: when each delivery was claimed and what it waited for (why it was late)

Revision ID: 0004_delivery_timings
Revises: 0003_channel_health
Create Date: 2026-12-04 22:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_delivery_timings"
down_revision = "0003_channel_health"
branch_labels = None
depends_on = None

WAITS = ("wait_throttle", "wait_quiet", "wait_retry", "wait_down", "wait_provider")


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("claimed_at", sa.Float(), nullable=True))
        for name in WAITS:
            batch.add_column(sa.Column(name, sa.Float(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        for name in ("claimed_at", *WAITS):
            batch.drop_column(name)
