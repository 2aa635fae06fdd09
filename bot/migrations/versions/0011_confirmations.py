"""confirmations: who confirmed a notification, when and on which channel

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


def downgrade() -> None:
    op.drop_table("confirmation")
