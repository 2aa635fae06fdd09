"""Soft failures that repeat put an address on the suppression list too.

A hard failure (SMTP 5.1.x, Twilio 21211/21610/21614...) suppresses at once (``ledger.record``). A
*soft* failure says nothing final about the address on its own: an email delivery that ``expired``
after the recipient's server kept answering 4xx (``server_error``: mailbox full, over quota) for the
whole of ``retry_for``, or a delivery that ``failed`` with a recipient-side reason that does not
suppress (``rejected_recipient``: SMTP 5xx without 5.1.x, Twilio 30003/30004/21612;
``undelivered`` from a Twilio status callback; ``bounced: …`` from a delivery report that came back
later without a hard code, :mod:`.bounces`). Connection failures, timeouts and rate limits are
about Herald's own path, never the address, so they do not count.

The rule: when the last ``threshold`` (default 3) notifications that reached a final state for an
address, among those created in the last ``window`` (default 30 days), all soft-failed, the address
is suppressed (source ``soft-failures``). A success in between resets the streak. A failure counts
only when the same notification reached someone else on that channel: an outage of the relay or of
Twilio must not put the whole company on the list. The sweep runs in
the transaction that creates a notification, before its deliveries are written, so the new
notification already skips the address; it reads only deliveries of recent notifications that
failed or expired (an index range), and looks closer only at the few addresses over the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bot.tables import Delivery, Notification, Suppression

DELIVERY = SQLModel.metadata.tables[Delivery.__tablename__]
NOTIFICATION = SQLModel.metadata.tables[Notification.__tablename__]
SUPPRESSION = SQLModel.metadata.tables[Suppression.__tablename__]

SOFT_REASONS = ("rejected_recipient", "undelivered")
BOUNCED = "bounced:"  # a later bounce (:mod:`.bounces`); hard ones are suppressed already
SOURCE = "soft-failures"


@dataclass(frozen=True, slots=True)
class SoftFailurePolicy:
    threshold: int = 3
    window: float = 30 * 86400.0


def is_soft(channel: str, state: str, reason: str | None) -> bool:
    if state == "expired":
        return channel == "email" and reason == "server_error"
    return state == "failed" and (reason in SOFT_REASONS or (reason or "").startswith(BOUNCED))


def sweep(connection: Connection, now: float, policy: SoftFailurePolicy) -> list[tuple[str, str]]:
    """Suppress addresses whose recent notifications all soft-failed; returns (channel, address) added."""
    if policy.threshold <= 0:
        return []
    d = DELIVERY.c
    recent = select(NOTIFICATION.c.id).where(NOTIFICATION.c.created_at >= now - policy.window)
    listed = exists().where(SUPPRESSION.c.channel == d.channel, SUPPRESSION.c.address == d.address)
    soft = or_(
        and_(d.state == "expired", d.channel == "email", d.reason == "server_error"),
        d.reason.in_(SOFT_REASONS),
        d.reason.like(f"{BOUNCED}%"),
    )
    candidates = connection.execute(
        select(d.channel, d.address)
        .where(d.notification_id.in_(recent.scalar_subquery()), d.state.in_(("expired", "failed")), soft)
        .where(d.address != "", ~listed)
        .group_by(d.channel, d.address)
        .having(func.count(func.distinct(d.notification_id)) >= policy.threshold)
    ).all()
    added: list[tuple[str, str]] = []
    for channel, address in candidates:
        last = connection.execute(
            select(d.notification_id, d.state, d.reason)
            .where(
                d.channel == channel,
                d.address == address,
                d.notification_id.in_(recent.scalar_subquery()),
                d.state.in_(("sent", "delivered", "failed", "expired")),
            )
            .order_by(d.updated_at.desc(), d.id.desc())
            .limit(policy.threshold * 4)
        ).all()
        streak: dict[str, bool] = {}
        for notification_id, state, reason in last:
            streak.setdefault(notification_id, True)
            streak[notification_id] = streak[notification_id] and is_soft(channel, state, reason)
            if len(streak) >= policy.threshold:
                break
        if (
            len(streak) >= policy.threshold
            and all(streak.values())
            and _reached_others(connection, channel, streak)
        ):
            connection.execute(
                SUPPRESSION.insert().values(
                    channel=channel,
                    address=address,
                    reason=f"{policy.threshold} soft failures in a row",
                    source=SOURCE,
                    created_at=now,
                )
            )
            added.append((channel, address))
    return added


def _reached_others(connection: Connection, channel: str, notification_ids: Iterable[str]) -> bool:
    """Each notification reached someone on ``channel``: the channel itself was working."""
    d = DELIVERY.c
    for notification_id in notification_ids:
        reached = connection.execute(
            select(d.id)
            .where(
                d.notification_id == notification_id, d.state.in_(("sent", "delivered")), d.channel == channel
            )
            .limit(1)
        ).first()
        if reached is None:
            return False
    return True
