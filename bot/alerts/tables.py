"""The stored shape of alerts: groups (with their frozen policy and timers), alerts, and notices.

Times are UNIX epoch seconds (float), as in :mod:`bot.tables`. The database is the truth: the
escalation timer is ``alert_group.next_escalation_at``, the outbox of firing notifications not yet
created is ``alert_group.pending`` (+ ``pending_at``), and ``version`` is bumped by every write so
writers can compare-and-set.
"""

from __future__ import annotations

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field

from bot.tables import TableModel


class AlertGroup(TableModel, table=True):
    """Alerts of one route with equal group labels, from the first firing one until all resolve."""

    __tablename__ = "alert_group"

    id: str = Field(primary_key=True, max_length=32)
    group_key: str = Field(max_length=64, index=True)
    # group_key while firing, NULL once resolved: at most one open group per key.
    open_key: str | None = Field(default=None, max_length=64, unique=True)
    route: str = Field(max_length=64)
    route_key: str = Field(max_length=64, index=True)
    source: str = Field(max_length=16)
    severity: str = Field(max_length=32)
    title: str = Field(max_length=500)
    group_labels: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    policy: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    external_url: str | None = Field(default=None, max_length=2000)
    state: str = Field(default="firing", max_length=16, index=True)  # firing | resolved
    opened_at: float = Field(index=True)
    resolved_at: float | None = Field(default=None)
    resolved_by: str | None = Field(default=None, max_length=200)
    acked_at: float | None = Field(default=None)
    acked_by: str | None = Field(default=None, max_length=200)
    # Escalation: steps taken so far (0 = only the route's audience) and when the next one is due.
    step: int = Field(default=0)
    next_escalation_at: float | None = Field(default=None, index=True)
    # Outbox of firing notifications: a reason (opened | update | repeat) while one is owed.
    notify_seq: int = Field(default=0)
    pending: str | None = Field(default=None, max_length=16)
    pending_at: float | None = Field(default=None, index=True)
    last_notified_at: float | None = Field(default=None)
    held_since: float | None = Field(default=None)  # flood control is holding the owed notification
    held_back: int = Field(default=0)  # notifications flood control held back (then sent late)
    resolution_pending: bool = Field(default=False)
    truncated: int = Field(default=0)
    version: int = Field(default=0)  # bumped by every write (compare-and-set)
    revision: int = Field(default=0)  # bumped by every change people can see (Slack follows it)
    slack_channel: str | None = Field(default=None, max_length=64)
    slack_ts: str | None = Field(default=None, max_length=64)  # "" while one process posts it
    slack_claimed_at: float | None = Field(default=None)
    slack_revision: int = Field(default=0)
    # The maintenance notification whose window silenced the group when it opened (it paged nobody
    # until the window ended, see :mod:`bot.alerts.maintenance`).
    silenced_by: str | None = Field(default=None, max_length=32, index=True)


class AlertInstance(TableModel, table=True):
    """One alert (one fingerprint) inside a group."""

    __tablename__ = "alert_instance"
    __table_args__ = (UniqueConstraint("group_id", "fingerprint", name="uq_alert_instance"),)

    id: int | None = Field(default=None, primary_key=True)
    group_id: str = Field(foreign_key="alert_group.id", max_length=32)
    fingerprint: str = Field(max_length=128)
    status: str = Field(max_length=16)  # firing | resolved
    labels: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    annotations: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    starts_at: float | None = Field(default=None)
    ends_at: float | None = Field(default=None)
    generator_url: str | None = Field(default=None, max_length=2000)
    first_seen_at: float = Field(default=0.0)
    last_seen_at: float = Field(default=0.0)
    resolved_at: float | None = Field(default=None)


class AlertNotice(TableModel, table=True):
    """A notification sent about a group: the page, updates, escalations, reminders, the resolution.

    One summary notification (flood control) belongs to many groups.
    """

    __tablename__ = "alert_notice"

    group_id: str = Field(primary_key=True, foreign_key="alert_group.id", max_length=32)
    notification_id: str = Field(primary_key=True, foreign_key="notification.id", max_length=32, index=True)
    kind: str = Field(
        max_length=16
    )  # opened | update | repeat | summary | escalation | reminder | resolution
    step: int = Field(default=0)
    audience: str = Field(default="", max_length=2000)
    at: float = Field(default=0.0)


class MaintenanceWindow(TableModel, table=True):
    """A maintenance notification's window: its silence matchers, its end, and its Alertmanager silence.

    ``am_state``: ``""`` (no ``[alertmanager] url``), ``create`` (owed), ``created``, ``expire`` (owed
    after an early end), ``expired``; ``am_retry_at`` is when the scheduler tries again after a failure.
    """

    __tablename__ = "maintenance_window"

    notification_id: str = Field(primary_key=True, foreign_key="notification.id", max_length=32)
    title: str = Field(default="", max_length=500)
    created_by: str = Field(default="", max_length=200)
    starts_at: float = Field(index=True)
    ends_at: float = Field(index=True)
    matchers: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    ended_early_at: float | None = Field(default=None)
    closed_at: float | None = Field(default=None, index=True)  # the end was handled (overrun checked)
    overran: bool = Field(default=False)
    overrun_notice: str = Field(default="", max_length=16)  # "" | owed | posted (Slack)
    am_state: str = Field(default="", max_length=16)
    am_silence_id: str | None = Field(default=None, max_length=64)
    am_retry_at: float | None = Field(default=None)
    am_error: str | None = Field(default=None, max_length=500)
