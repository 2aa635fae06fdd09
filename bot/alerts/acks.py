"""Acknowledging and resolving alert groups: from Slack's buttons, by SMS, or by hand.

Acknowledging stops the escalation chain at once (the timer is cleared) and cancels escalation and
reminder messages not yet handed to a provider; owed updates are dropped. Resolving by hand marks
every alert of the group resolved and sends the resolution notice to everyone who was notified.
Both are audited. ``ACK`` by SMS acknowledges the most recent open, unacknowledged group whose page
was sent to that number (a page not yet sent cannot be what it answers); ``ACK <alert id>`` a given
group that paged it.
A replayed inbound message is not acted on twice (:mod:`bot.recipients.inbound`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, exists, select, update
from sqlalchemy.engine import Connection

from bot import service
from bot.alerts.models import AckOutcome
from bot.alerts.notify import (
    CHAIN_KINDS,
    DELIVERY,
    GROUP,
    INSTANCE,
    NOTICE,
    PERSON,
    display_actor,
    group_row,
    resolution,
    stop_chain,
)
from bot.alerts.outbox import flush
from bot.app import Herald
from bot.engine import notice_state


def _explain(row: Mapping[str, Any] | None, group_id: str) -> AckOutcome:
    if row is None:
        return AckOutcome(group_id, False, f"There is no alert {group_id}.")
    if row["state"] == "resolved":
        return AckOutcome(
            group_id, False, f"Alert {group_id} ({row['title']}) is already resolved.", row["title"]
        )
    return AckOutcome(
        group_id,
        False,
        f"Alert {group_id} ({row['title']}) was already acknowledged by {display_actor(row['acked_by'])}.",
        row["title"],
    )


def _cancel_chain(herald: Herald, group_id: str, now: float) -> int:
    """Cancel escalation and reminder messages of the group not yet handed to a provider."""
    with herald.store.begin() as connection:
        ids = [
            str(value)
            for value in connection.execute(
                select(NOTICE.c.notification_id).where(
                    NOTICE.c.group_id == group_id, NOTICE.c.kind.in_(CHAIN_KINDS)
                )
            ).scalars()
        ]
    return sum(notice_state.cancel(herald.store, nid, now) for nid in ids)


def acknowledge(herald: Herald, group_id: str, actor: str) -> AckOutcome:
    """Acknowledge an open group: the chain stops now and owed updates are dropped. Audited."""
    now = herald.clock.now()
    with herald.store.begin() as connection:
        changed = stop_chain(
            connection,
            group_id,
            GROUP.c.state == "firing",
            GROUP.c.acked_at.is_(None),
            acked_at=now,
            acked_by=actor[:200],
        )
        row = group_row(connection, group_id)
    if not changed:
        return _explain(row, group_id)
    assert row is not None
    cancelled = _cancel_chain(herald, group_id, now)
    service.audit(herald, actor, "alert.ack", group_id, True, {"title": row["title"], "cancelled": cancelled})
    return AckOutcome(
        group_id,
        True,
        f"Acknowledged {row['title']} (alert {group_id}); escalation stopped.",
        row["title"],
        cancelled,
    )


def resolve(herald: Herald, group_id: str, actor: str) -> AckOutcome:
    """Resolve an open group by hand; everyone notified gets the resolution notice. Audited."""
    now = herald.clock.now()
    with herald.store.begin() as connection:
        notified = exists().where(NOTICE.c.group_id == group_id)
        changed = stop_chain(
            connection, group_id, GROUP.c.state == "firing", **resolution(now, actor[:200], notified)
        )
        if changed:
            _resolve_alerts(connection, group_id, now)
        row = group_row(connection, group_id)
    if not changed:
        return _explain(row, group_id)
    assert row is not None
    cancelled = _cancel_chain(herald, group_id, now)
    service.audit(herald, actor, "alert.resolve", group_id, True, {"title": row["title"]})
    flush(herald)
    return AckOutcome(group_id, True, f"Resolved {row['title']} (alert {group_id}).", row["title"], cancelled)


def _resolve_alerts(connection: Connection, group_id: str, now: float) -> None:
    """Every alert of the group still firing is resolved with it."""
    connection.execute(
        update(INSTANCE)
        .where(INSTANCE.c.group_id == group_id, INSTANCE.c.status == "firing")
        .values(status="resolved", resolved_at=now)
    )


# -- acknowledging by SMS ---------------------------------------------------------------------------

ACK_WORDS = ("ACK", "ACKNOWLEDGE", "ACKNOWLEDGED")


def ack_by_phone(herald: Herald, phone: str, text: str) -> str | None:
    """An inbound SMS ``ACK`` (optionally ``ACK <alert id>``) from ``phone``: acknowledge the most
    recent open, unacknowledged alert group that paged that number. Returns the reply to text back,
    or None when the message is not an ACK (so the caller handles STOP, HELP...)."""
    words = text.strip().split()
    if not words or words[0].upper().rstrip(".!") not in ACK_WORDS:
        return None
    wanted = words[1].lower() if len(words) > 1 else None
    group_id, name = _paged(herald, phone, wanted)
    if group_id is None:
        target = f"alert {wanted}" if wanted else "open alert"
        return f"Herald: no {target} waiting for an acknowledgement paged this number."
    actor = f"sms:{phone}" + (f" ({name})" if name else "")
    outcome = acknowledge(herald, group_id, actor)
    return f"Herald: {outcome.message}"


def _paged(herald: Herald, phone: str, wanted: str | None) -> tuple[str | None, str | None]:
    conditions = [
        DELIVERY.c.channel == "sms",
        DELIVERY.c.address == phone,
        GROUP.c.state == "firing",
        GROUP.c.acked_at.is_(None),
    ]
    if wanted:
        conditions.append(GROUP.c.id == wanted)
    else:  # a bare ACK answers a page the number got, not one still queued
        conditions.append(DELIVERY.c.state.in_(("sent", "delivered")))
    with herald.store.begin() as connection:
        group_id = connection.execute(
            select(GROUP.c.id)
            .select_from(
                DELIVERY.join(NOTICE, NOTICE.c.notification_id == DELIVERY.c.notification_id).join(
                    GROUP, GROUP.c.id == NOTICE.c.group_id
                )
            )
            .where(and_(*conditions))
            .order_by(DELIVERY.c.created_at.desc(), GROUP.c.opened_at.desc())
            .limit(1)
        ).scalar_one_or_none()
        name = connection.execute(
            select(PERSON.c.name).where(PERSON.c.phone == phone).limit(1)
        ).scalar_one_or_none()
    return (str(group_id) if group_id else None), (str(name) if name else None)
