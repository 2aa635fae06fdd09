"""inbound SMS seen by MessageSid (replayed ACK/STOP/START change nothing)

Revision ID: 0009_inbound_sms
Revises: 0003_channel_health
Create Date: 2026-12-04 23:00:00

(Dispatcher liveness, from the same change, needed no schema change: it uses the ``worker_lock`` rows.)
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_inbound_sms"
down_revision = "0003_channel_health"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_sms",
        sa.Column("message_sid", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("message_sid"),
    )


def downgrade() -> None:
    op.drop_table("inbound_sms")
