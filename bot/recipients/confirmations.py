"""Confirmations: a recipient says "I got it" (SPEC "Confirmations and the channel ladder").

A notification asks for confirmation when its ``meta`` carries ``"confirm": true`` (``--confirm``,
the typed form's ``confirm``, ``[sla.<severity>] confirm``). Each message carries its way back: the
Slack DM's Confirm button, the email's ``/c/{token}`` link (a page whose button POSTs), an SMS reply
``OK`` or ``1``. The first confirmation of a person counts (its time and channel are kept); repeats
change nothing.

Confirm tokens are signed like the preferences tokens (:mod:`bot.tokens`) over the notification id
and the person id, with a ``confirm:`` prefix inside the MAC so that neither kind of token passes
for the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot.recipients.tables import Confirmation
from bot.store import Store
from bot.tables import Delivery, Notification, Person, table_of
from bot.tokens import make_token, read_token

CONFIRMATION = table_of(Confirmation)
DELIVERY = table_of(Delivery)
NOTIFICATION = table_of(Notification)
PERSON = table_of(Person)

_PREFIX = "confirm:"
_SEPARATOR = "\x1f"  # never in a notification id
SMS_CANDIDATES = 20  # recent SMS to one number looked at when an OK arrives


@dataclass(frozen=True, slots=True)
class Confirmed:
    """One person's confirmation of one notification (the first one, whatever came later)."""

    notification_id: str
    person_id: str
    at: float
    channel: str
    first: bool  # this call recorded it (False: an earlier confirmation stands)


def asks_confirmation(meta: str | dict[str, Any] | None) -> bool:
    """Whether a notification's ``meta`` (JSON text or dict) asks its recipients to confirm."""
    if isinstance(meta, str):
        try:
            meta = json.loads(meta or "{}")
        except ValueError:
            return False
    return bool(isinstance(meta, dict) and meta.get("confirm"))


def make_confirm_token(key: bytes, notification_id: str, person_id: str, now: float) -> str:
    """A signed, expiring token naming one person of one notification (the ``/c/{token}`` link)."""
    return make_token(key, f"{_PREFIX}{notification_id}{_SEPARATOR}{person_id}", now)


def read_confirm_token(key: bytes, token: str, now: float) -> tuple[str, str] | None:
    """``(notification_id, person_id)`` of a valid, unexpired confirm token; None for anything else
    (a preferences token included)."""
    subject = read_token(key, token, now)
    if subject is None or not subject.startswith(_PREFIX) or _SEPARATOR not in subject:
        return None
    notification_id, _, person_id = subject.removeprefix(_PREFIX).partition(_SEPARATOR)
    return (notification_id, person_id) if notification_id and person_id else None


def confirm(store: Store, notification_id: str, person_id: str, channel: str, now: float) -> Confirmed | None:
    """Record that ``person_id`` confirmed ``notification_id`` on ``channel``; the confirmation that
    stands. None when the notification does not ask for confirmation or the person is not among its
    recipients."""
    with store.begin() as connection:
        if not _is_recipient(connection, notification_id, person_id):
            return None
        insert = (sqlite.insert if store.is_sqlite else postgresql.insert)(CONFIRMATION)
        statement = insert.values(
            notification_id=notification_id, person_id=person_id, at=now, channel=channel
        )
        inserted = connection.execute(statement.on_conflict_do_nothing()).rowcount
        row = connection.execute(
            select(CONFIRMATION.c.at, CONFIRMATION.c.channel).where(
                CONFIRMATION.c.notification_id == notification_id, CONFIRMATION.c.person_id == person_id
            )
        ).one()
    return Confirmed(notification_id, person_id, float(row.at), str(row.channel), bool(inserted))


def _is_recipient(connection: Connection, notification_id: str, person_id: str) -> bool:
    meta = connection.execute(
        select(NOTIFICATION.c.meta).where(NOTIFICATION.c.id == notification_id)
    ).scalar_one_or_none()
    if meta is None or not asks_confirmation(meta):
        return False
    found = connection.execute(
        select(DELIVERY.c.id)
        .where(DELIVERY.c.notification_id == notification_id, DELIVERY.c.person_id == person_id)
        .limit(1)
    ).first()
    return found is not None


def reader(store: Store, notification_id: str, person_id: str) -> tuple[str, str]:
    """The notification's severity and the person's language (``""`` when unknown): what picks the
    phrases (:mod:`channels.phrases`) of a text that answers this person about it."""
    with store.begin() as connection:
        severity = connection.execute(
            select(NOTIFICATION.c.severity).where(NOTIFICATION.c.id == notification_id)
        ).scalar_one_or_none()
        language = connection.execute(
            select(PERSON.c.language).where(PERSON.c.id == person_id)
        ).scalar_one_or_none()
    return str(severity or ""), str(language or "")


def confirm_by_slack_user(
    store: Store, notification_id: str, slack_user_id: str, now: float
) -> Confirmed | None:
    """The Confirm button: the person with ``slack_user_id`` confirms ``notification_id``."""
    with store.begin() as connection:
        person_ids = connection.execute(
            select(PERSON.c.id).where(PERSON.c.slack_user_id == slack_user_id)
        ).scalars()
        candidates = [str(p) for p in person_ids]
    for person_id in candidates:
        found = confirm(store, notification_id, person_id, "slack", now)
        if found is not None:
            return found
    return None


def confirm_by_phone(store: Store, phone: str, now: float) -> Confirmed | None:
    """An SMS ``OK``: confirms the latest confirm-asking notification sent by SMS to ``phone``."""
    with store.begin() as connection:
        rows = connection.execute(
            select(DELIVERY.c.notification_id, DELIVERY.c.person_id, NOTIFICATION.c.meta)
            .join(NOTIFICATION, NOTIFICATION.c.id == DELIVERY.c.notification_id)
            .where(
                DELIVERY.c.channel == "sms",
                DELIVERY.c.address == phone,
                DELIVERY.c.state.in_(("sent", "delivered")),
            )
            .order_by(DELIVERY.c.sent_at.desc())
            .limit(SMS_CANDIDATES)
        ).all()
    for row in rows:
        if asks_confirmation(row.meta):
            return confirm(store, str(row.notification_id), str(row.person_id), "sms", now)
    return None


def confirmed_count(connection: Connection, notification_id: str) -> int:
    """How many people confirmed ``notification_id``."""
    value = connection.execute(
        select(func.count())
        .select_from(CONFIRMATION)
        .where(CONFIRMATION.c.notification_id == notification_id)
    ).scalar_one()
    return int(value)


def confirmed_people(connection: Connection, notification_id: str) -> set[str]:
    """The ids of the people who confirmed ``notification_id``."""
    rows = connection.execute(
        select(CONFIRMATION.c.person_id).where(CONFIRMATION.c.notification_id == notification_id)
    ).scalars()
    return {str(row) for row in rows}
