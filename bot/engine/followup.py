"""Follow-ups: a notice to the same people over the same channels, threaded with the original.

``herald followup ID --body B [--done]`` and Slack's ``/announce update ID: text`` / ``/announce done
ID: text`` call :func:`followup`. The follow-up is a notification of kind ``followup`` whose
``parent_id`` is the original (a follow-up of a follow-up answers the original too), with the
original's severity, title and channels, and one delivery per (person who had a delivery of the
original, channel). Email threads it under the message each person got (``In-Reply-To``/``References``,
subject ``Re: [SEVERITY] Title``, see :mod:`bot.engine.stages`); SMS carries the original's title
first, as every SMS does. ``done`` is the all-clear: it also ends the original's maintenance window
now (:func:`bot.alerts.maintenance.end_early`), so the scheduler closes it and the Alertmanager
silence is expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bot import service
from bot.alerts import maintenance
from bot.app import Herald
from bot.engine.create import NewNotification, ensure_notification, new_notification_id
from bot.recipients.rules import delivery_rules
from bot.tables import Delivery, Notification, Person, table_of

DELIVERY = table_of(Delivery)
NOTIFICATION = table_of(Notification)
PERSON = table_of(Person)

MAX_BODY = 10_000


class FollowupError(ValueError):
    """The follow-up cannot be sent as asked; the message is for the user."""


@dataclass(frozen=True, slots=True)
class Followup:
    id: str
    original: str
    recipients: int
    ended_window: bool


def original_of(herald: Herald, notification_id: str) -> dict[str, Any]:
    """The notification a follow-up of ``notification_id`` answers (the original of a follow-up)."""
    with herald.store.begin() as connection:
        row = connection.execute(select(NOTIFICATION).where(NOTIFICATION.c.id == notification_id)).first()
        if row is None:
            raise FollowupError(f"no notification {notification_id!r}")
        found = dict(row._mapping)
        if found["kind"] == "followup" and found["parent_id"]:
            return original_of(herald, str(found["parent_id"]))
    if found["kind"] != "announcement":
        raise FollowupError(f"{notification_id} is an alert notice, not an announcement (use ack/resolve)")
    return found


def followup(herald: Herald, notification_id: str, body: str, done: bool, actor: str) -> Followup:
    """Store the follow-up and its deliveries (the dispatchers send it); with ``done``, end the
    original's maintenance window now."""
    body = body.strip()
    if not body:
        raise FollowupError("the follow-up body is empty")
    if len(body) > MAX_BODY:
        raise FollowupError(f"the follow-up body is longer than {MAX_BODY} characters")
    original = original_of(herald, notification_id)
    now = herald.clock.now()
    new = _notification(herald, original, body, done, actor, now)
    people = PERSON.c.id.in_(
        select(DELIVERY.c.person_id).where(DELIVERY.c.notification_id == original["id"]).distinct()
    )
    _, recipients = ensure_notification(herald.store, new, people, delivery_rules(herald.settings))
    ended = maintenance.end_early(herald.store, original["id"], now) if done else False
    detail = {"original": original["id"], "done": done, "ended_window": ended, "recipients": recipients}
    service.audit(herald, actor, "followup", new.id, True, detail)
    return Followup(new.id, original["id"], recipients or 0, ended)


def _notification(
    herald: Herald, original: dict[str, Any], body: str, done: bool, actor: str, now: float
) -> NewNotification:
    """The follow-up: the original's severity, title, audience and channels; due by its SLA."""
    return NewNotification(
        id=new_notification_id(),
        kind="followup",
        severity=original["severity"],
        title=original["title"],
        body=body,
        audience=original["audience"],
        channels=tuple(c for c in str(original["channels"]).split(",") if c),
        created_by=actor,
        created_at=now,
        start_at=now,
        deadline=now + herald.settings.sla_for(original["severity"]).deliver_within,
        parent_id=original["id"],
        meta={"followup_of": original["id"], "done": done},
    )
