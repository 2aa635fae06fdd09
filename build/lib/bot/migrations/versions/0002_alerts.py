"""alerts: alert groups, alerts and the notices sent about them

Revision ID: 0002_alerts
Revises: 0001
Create Date: 2026-11-24 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_alerts"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_group",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("group_key", sa.String(length=64), nullable=False),
        sa.Column("open_key", sa.String(length=64), nullable=True),
        sa.Column("route", sa.String(length=64), nullable=False),
        sa.Column("route_key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("group_labels", sa.Text(), server_default="{}", nullable=False),
        sa.Column("policy", sa.Text(), server_default="{}", nullable=False),
        sa.Column("external_url", sa.String(length=2000), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.Float(), nullable=False),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("acked_at", sa.Float(), nullable=True),
        sa.Column("acked_by", sa.String(length=200), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("next_escalation_at", sa.Float(), nullable=True),
        sa.Column("notify_seq", sa.Integer(), nullable=False),
        sa.Column("pending", sa.String(length=16), nullable=True),
        sa.Column("pending_at", sa.Float(), nullable=True),
        sa.Column("last_notified_at", sa.Float(), nullable=True),
        sa.Column("held_since", sa.Float(), nullable=True),
        sa.Column("held_back", sa.Integer(), nullable=False),
        sa.Column("resolution_pending", sa.Boolean(), nullable=False),
        sa.Column("truncated", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("slack_channel", sa.String(length=64), nullable=True),
        sa.Column("slack_ts", sa.String(length=64), nullable=True),
        sa.Column("slack_claimed_at", sa.Float(), nullable=True),
        sa.Column("slack_revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key"),
    )
    with op.batch_alter_table("alert_group", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_group_group_key"), ["group_key"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_alert_group_next_escalation_at"), ["next_escalation_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_alert_group_opened_at"), ["opened_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_group_pending_at"), ["pending_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_group_route_key"), ["route_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_group_state"), ["state"], unique=False)

    op.create_table(
        "alert_instance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("labels", sa.Text(), server_default="{}", nullable=False),
        sa.Column("annotations", sa.Text(), server_default="{}", nullable=False),
        sa.Column("starts_at", sa.Float(), nullable=True),
        sa.Column("ends_at", sa.Float(), nullable=True),
        sa.Column("generator_url", sa.String(length=2000), nullable=True),
        sa.Column("first_seen_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["group_id"], ["alert_group.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("group_id", "fingerprint", name="uq_alert_instance"),
    )

    op.create_table(
        "alert_notice",
        sa.Column("group_id", sa.String(length=32), nullable=False),
        sa.Column("notification_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("audience", sa.String(length=2000), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["alert_group.id"]),
        sa.ForeignKeyConstraint(["notification_id"], ["notification.id"]),
        sa.PrimaryKeyConstraint("group_id", "notification_id"),
    )
    with op.batch_alter_table("alert_notice", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_notice_notification_id"), ["notification_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_notice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_notice_notification_id"))
    op.drop_table("alert_notice")
    op.drop_table("alert_instance")
    with op.batch_alter_table("alert_group", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_group_state"))
        batch_op.drop_index(batch_op.f("ix_alert_group_route_key"))
        batch_op.drop_index(batch_op.f("ix_alert_group_pending_at"))
        batch_op.drop_index(batch_op.f("ix_alert_group_opened_at"))
        batch_op.drop_index(batch_op.f("ix_alert_group_next_escalation_at"))
        batch_op.drop_index(batch_op.f("ix_alert_group_group_key"))
    op.drop_table("alert_group")
