"""maintenance windows: a window per maintenance notification, and the alert groups it silenced

Revision ID: 0007_maintenance_windows
Revises: 0003_channel_health
Create Date: 2026-12-04 22:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_maintenance_windows"
down_revision = "0003_channel_health"
branch_labels = None
depends_on = "0002_alerts"  # alert_group gains a column


def upgrade() -> None:
    op.create_table(
        "maintenance_window",
        sa.Column("notification_id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("starts_at", sa.Float(), nullable=False),
        sa.Column("ends_at", sa.Float(), nullable=False),
        sa.Column("matchers", sa.Text(), server_default="{}", nullable=False),
        sa.Column("ended_early_at", sa.Float(), nullable=True),
        sa.Column("closed_at", sa.Float(), nullable=True),
        sa.Column("overran", sa.Boolean(), nullable=False),
        sa.Column("overrun_notice", sa.String(length=16), nullable=False),
        sa.Column("am_state", sa.String(length=16), nullable=False),
        sa.Column("am_silence_id", sa.String(length=64), nullable=True),
        sa.Column("am_retry_at", sa.Float(), nullable=True),
        sa.Column("am_error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["notification_id"], ["notification.id"]),
        sa.PrimaryKeyConstraint("notification_id"),
    )
    op.create_index("ix_maintenance_window_starts_at", "maintenance_window", ["starts_at"])
    op.create_index("ix_maintenance_window_ends_at", "maintenance_window", ["ends_at"])
    op.create_index("ix_maintenance_window_closed_at", "maintenance_window", ["closed_at"])
    with op.batch_alter_table("alert_group") as batch:
        batch.add_column(sa.Column("silenced_by", sa.String(length=32), nullable=True))
        batch.create_index("ix_alert_group_silenced_by", ["silenced_by"])


def downgrade() -> None:
    with op.batch_alter_table("alert_group") as batch:
        batch.drop_index("ix_alert_group_silenced_by")
        batch.drop_column("silenced_by")
    op.drop_table("maintenance_window")
