"""delivery.sent_by: the dispatcher (serve or worker id) that sent a delivery; a send no longer writes an
attempt row (attempts are kept for failures and retries)

Revision ID: 0012_delivery_sent_by
Revises: 0003_channel_health
Create Date: 2026-12-05 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_delivery_sent_by"
down_revision = "0003_channel_health"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("sent_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("sent_by")
