"""A reminder before a maintenance window: ``herald announce --window START..END --remind 15m``.

The lead time is kept in the maintenance notification's ``meta`` (``"remind": seconds``). Once the
window's start minus the lead has come, :func:`remind_due` (the alert tick of ``herald serve``, under
the injected clock) creates the reminder: a notification of kind ``followup`` threaded with the
original (see :mod:`bot.engine.followup`), to the people who had a delivery of it, over the same
channels, due before the window starts. Its ``meta`` carries the window: a follow-up with a window
is what the channels open with the ``reminder`` phrase, "Reminder: this maintenance starts at …", in
each person's language (:func:`channels.phrases.as_reminder`). Its idempotency key ``remind:<id>``
makes it restart-safe and never twice, also with several processes ticking. A window ended early,
cancelled or already started gets no reminder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, exists, literal, select
from sqlalchemy.orm import aliased

from bot import service
from bot.alerts.maintenance import WINDOW, Window, WindowError, iso
from bot.app import Herald
from bot.config import parse_duration
from bot.engine.create import NewNotification, ensure_notification, new_notification_id
from bot.recipients.rules import delivery_rules
from bot.tables import Delivery, Notification, Person, table_of

log = logging.getLogger("herald.alerts.maintenance")

DELIVERY = table_of(Delivery)
NOTIFICATION = table_of(Notification)
PERSON = table_of(Person)
MAX_PER_TICK = 20
KEY_PREFIX = "remind:"


def parse_remind(text: str, window: Window | None, now: float) -> float:
    """``--remind 15m``: the lead in seconds; it needs a window that starts later than that."""
    if window is None:
        raise WindowError("--remind: needs --window START..END")
    try:
        lead = parse_duration(text)
    except ValueError as exc:
        raise WindowError(f"--remind: {exc}") from exc
    if lead <= 0:
        raise WindowError("--remind: expected a duration such as 15m")
    if window.starts_at - lead <= now:
        raise WindowError("--remind: the window starts sooner than that")
    return lead


def remind_due(herald: Herald) -> list[str]:
    """Create the reminders that are due; returns their ids."""
    now = herald.clock.now()
    created = []
    for row in _candidates(herald, now):
        lead = _lead(row["meta"])
        if lead is not None and row["starts_at"] - lead <= now:
            created.append(_remind(herald, row, now))
    return created


def _candidates(herald: Herald, now: float) -> list[dict[str, Any]]:
    """Windows not started, not ended, whose notification went out and asks for a reminder not yet made."""
    n, reminder = NOTIFICATION.c, aliased(NOTIFICATION)
    made = exists().where(reminder.c.idempotency_key == literal(KEY_PREFIX) + WINDOW.c.notification_id)
    query = (
        select(NOTIFICATION, WINDOW.c.starts_at, WINDOW.c.ends_at)
        .join(WINDOW, WINDOW.c.notification_id == n.id)
        .where(WINDOW.c.starts_at > now, WINDOW.c.closed_at.is_(None), WINDOW.c.ended_early_at.is_(None))
        .where(and_(n.state.not_in(("scheduled", "cancelled")), n.meta.like('%"remind"%'), ~made))
        .order_by(WINDOW.c.starts_at)
        .limit(MAX_PER_TICK)
    )
    with herald.store.begin() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def _lead(meta: str) -> float | None:
    try:
        value = json.loads(meta or "{}").get("remind")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _remind(herald: Herald, original: Mapping[str, Any], now: float) -> str:
    nid, start, end = str(original["id"]), float(original["starts_at"]), float(original["ends_at"])
    new = NewNotification(
        id=new_notification_id(),
        kind="followup",
        severity=original["severity"],
        title=original["title"],
        body=str(original["body"] or ""),
        audience=original["audience"],
        channels=tuple(c for c in str(original["channels"]).split(",") if c),
        created_by="scheduler",
        created_at=now,
        start_at=now,
        deadline=min(now + herald.settings.sla_for(original["severity"]).deliver_within, start),
        parent_id=nid,
        idempotency_key=KEY_PREFIX + nid,
        meta={"followup_of": nid, "reminder": True, "window": {"start": start, "end": end}},
    )
    people = PERSON.c.id.in_(select(DELIVERY.c.person_id).where(DELIVERY.c.notification_id == nid).distinct())
    reminder_id, recipients = ensure_notification(herald.store, new, people, delivery_rules(herald.settings))
    if recipients is not None:
        log.info("maintenance %s: reminder %s to %d people", nid, reminder_id, recipients)
        detail = {"original": nid, "recipients": recipients, "starts_at": iso(start)}
        service.audit(herald, "scheduler", "maintenance.remind", reminder_id, True, detail)
    return reminder_id
