"""Retention: finished notifications and resolved alerts older than ``[retention] keep_for`` go.

What goes: a notification that is final (``done`` or ``cancelled``, nothing left queued, deferred or
sending) and finished before the cut-off, with its deliveries, their attempts and its alert links,
unless it belongs to an alert group still open; a resolved alert group resolved before the cut-off
(nothing owed: no pending notice, no resolution to send) with its alerts and links. What stays: the
directory, suppressions and opt-outs (they protect people), the audit log (the record of who did
what), daily counters. Apart, after ``[retention] inbound_sms_for``: the ``MessageSid`` of each inbound
SMS acted on (:mod:`bot.recipients.inbound`), kept so a replay of it changes nothing; a message older
than that posted again would be acted on again, so the period is far longer than Twilio retries a
webhook (at least a day; 90 days by default).

Deleted in batches of :data:`BATCH` notifications or groups (fewer when their deliveries pass
:data:`DELIVERY_BUDGET`), one transaction each, so a large purge
never holds locks for long and a crash mid-way leaves whole notifications. Idempotent: several
``serve`` processes running it at once delete each row once (the leader runs it; a double run only
finds less to do).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, exists, select

from bot.alerts.tables import AlertGroup, AlertInstance, AlertNotice, MaintenanceWindow
from bot.app import Herald
from bot.recipients.tables import Confirmation, InboundSms
from bot.store import Store
from bot.tables import Attempt, Delivery, Notification, Rung, table_of

log = logging.getLogger("herald.retention")

BATCH = 500
DELIVERY_BUDGET = 50_000  # deliveries (and about as many attempts) deleted per transaction

NOTIFICATION = table_of(Notification)
DELIVERY = table_of(Delivery)
ATTEMPT = table_of(Attempt)
GROUP = table_of(AlertGroup)
INSTANCE = table_of(AlertInstance)
NOTICE = table_of(AlertNotice)
WINDOW = table_of(MaintenanceWindow)
RUNG = table_of(Rung)
CONFIRMATION = table_of(Confirmation)
INBOUND = table_of(InboundSms)


@dataclass
class Purged:
    """What one purge deleted."""

    notifications: int = 0
    deliveries: int = 0
    attempts: int = 0
    alert_groups: int = 0
    inbound_sms: int = 0

    def __bool__(self) -> bool:
        return bool(self.notifications or self.alert_groups or self.inbound_sms)

    def describe(self) -> str:
        return (
            f"{self.notifications} notification(s) with {self.deliveries} deliveries and "
            f"{self.attempts} attempts, {self.alert_groups} resolved alert group(s), "
            f"{self.inbound_sms} inbound SMS record(s)"
        )


def purge(store: Store, now: float, keep_for: float, inbound_sms_for: float = 0.0) -> Purged:
    """Delete what finished more than ``keep_for`` seconds before ``now``, and the inbound SMS
    records received more than ``inbound_sms_for`` before it (0 keeps them)."""
    purged = Purged()
    if keep_for > 0:
        cutoff = now - keep_for
        while _purge_groups(store, cutoff, purged):
            pass
        while _purge_notifications(store, cutoff, purged):
            pass
    if inbound_sms_for > 0:
        while _purge_inbound_sms(store, now - inbound_sms_for, purged):
            pass
    return purged


def retention_job(herald: Herald) -> Callable[[], Awaitable[None]]:
    """The scheduler job for ``herald serve``: purge what is older than ``[retention] keep_for``."""

    async def run() -> None:
        period = herald.settings.retention
        now = herald.clock.now()
        purged = await asyncio.to_thread(purge, herald.store, now, period.keep_for, period.inbound_sms_for)
        if purged:
            log.info("retention: deleted %s", purged.describe())

    return run


def _purge_groups(store: Store, cutoff: float, purged: Purged) -> bool:
    """One batch of resolved alert groups; False when none is left."""
    with store.begin() as connection:
        ids = list(
            connection.execute(
                select(GROUP.c.id)
                .where(
                    GROUP.c.state == "resolved",
                    GROUP.c.resolved_at < cutoff,
                    GROUP.c.pending.is_(None),
                    GROUP.c.resolution_pending.is_(False),
                )
                .limit(BATCH)
            ).scalars()
        )
        if not ids:
            return False
        connection.execute(delete(NOTICE).where(NOTICE.c.group_id.in_(ids)))
        connection.execute(delete(INSTANCE).where(INSTANCE.c.group_id.in_(ids)))
        purged.alert_groups += _count(connection.execute(delete(GROUP).where(GROUP.c.id.in_(ids))))
    return True


def _purge_notifications(store: Store, cutoff: float, purged: Purged) -> bool:
    """One batch of final notifications; False when none is left."""
    open_delivery = exists().where(
        DELIVERY.c.notification_id == NOTIFICATION.c.id,
        DELIVERY.c.state.in_(("queued", "deferred", "sending")),
    )
    open_group = exists().where(
        NOTICE.c.notification_id == NOTIFICATION.c.id,
        NOTICE.c.group_id == GROUP.c.id,
        GROUP.c.state != "resolved",
    )
    with store.begin() as connection:
        candidates = connection.execute(
            select(NOTIFICATION.c.id, NOTIFICATION.c.recipients, NOTIFICATION.c.channels)
            .where(
                NOTIFICATION.c.state.in_(("done", "cancelled")),
                and_(
                    NOTIFICATION.c.finished_at.is_not(None),
                    NOTIFICATION.c.finished_at < cutoff,
                )
                | and_(NOTIFICATION.c.finished_at.is_(None), NOTIFICATION.c.created_at < cutoff),
                ~open_delivery,
                ~open_group,
            )
            .order_by(NOTIFICATION.c.created_at)
            .limit(BATCH)
        ).all()
        if not candidates:
            return False
        ids: list[str] = []
        rows = 0
        for notification_id, recipients, channels in candidates:
            if ids and rows >= DELIVERY_BUDGET:
                break  # the rest next batch: a transaction stays a few seconds at most
            ids.append(notification_id)
            rows += (recipients or 0) * max(1, len((channels or "").split(",")))
        deliveries = select(DELIVERY.c.id).where(DELIVERY.c.notification_id.in_(ids))
        purged.attempts += _count(
            connection.execute(delete(ATTEMPT).where(ATTEMPT.c.delivery_id.in_(deliveries.scalar_subquery())))
        )
        purged.deliveries += _count(
            connection.execute(delete(DELIVERY).where(DELIVERY.c.notification_id.in_(ids)))
        )
        connection.execute(delete(NOTICE).where(NOTICE.c.notification_id.in_(ids)))
        connection.execute(delete(WINDOW).where(WINDOW.c.notification_id.in_(ids)))
        connection.execute(delete(RUNG).where(RUNG.c.notification_id.in_(ids)))
        connection.execute(delete(CONFIRMATION).where(CONFIRMATION.c.notification_id.in_(ids)))
        purged.notifications += _count(
            connection.execute(delete(NOTIFICATION).where(NOTIFICATION.c.id.in_(ids)))
        )
    return True


def _purge_inbound_sms(store: Store, cutoff: float, purged: Purged) -> bool:
    """One batch of inbound SMS records received before ``cutoff``; False when none is left."""
    with store.begin() as connection:
        sids = list(
            connection.execute(
                select(INBOUND.c.message_sid).where(INBOUND.c.received_at < cutoff).limit(BATCH * 10)
            ).scalars()
        )
        if not sids:
            return False
        purged.inbound_sms += _count(
            connection.execute(delete(INBOUND).where(INBOUND.c.message_sid.in_(sids)))
        )
    return True


def _count(result: Any) -> int:
    return int(result.rowcount or 0)
