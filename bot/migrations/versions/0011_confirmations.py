"""confirmations (who confirmed a notification, when, on which channel) and channel ladder rungs

Revision ID: 0011_confirmations
Revises: 0003_channel_health
Create Date: 2026-12-04 23:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_confirmations"
down_revision = "0003_channel_health"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "confirmation",
        sa.Column("notification_id", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=200), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("notification_id", "person_id"),
    )
    op.create_table(
        "rung",
        sa.Column("notification_id", sa.String(length=32), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("channels", sa.String(length=64), nullable=False),
        sa.Column("deadline", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("people", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("notification_id", "idx"),
    )


def downgrade() -> None:
    op.drop_table("rung")
    op.drop_table("confirmation")
