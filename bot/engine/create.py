"""Writing a notification and all of its deliveries, once per idempotency key.

Every notification is created here: announcements (CLI ``herald announce``, Slack's Send, through
:func:`bot.service.announce`) and alert pages (:mod:`bot.alerts.outbox`, :mod:`bot.alerts.escalation`).
A notification and all of its deliveries are written in one transaction before anything is sent:
the row, then one ``INSERT … SELECT`` per channel from the audience query, each person's delivery
already in the state their address and rules give (queued, deferred for quiet hours, or suppressed).

A keyed notification is written at most once: :func:`ensure_notification` returns the one already
stored under the key, also when a concurrent writer stored it a moment earlier (the key's unique
index settles that race, so a double click on Send or a retry never fails).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Float, Select, and_, case, exists, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot.channel_specs import spec
from bot.engine.ledger import OPEN_STATES, announce_work
from bot.recipients import rules as recipient_rules
from bot.recipients import soft_failures
from bot.recipients.rules import DeliveryRules
from bot.store import Store
from bot.tables import Delivery, Notification, Person, Suppression, table_of

DELIVERY = table_of(Delivery)
NOTIFICATION = table_of(Notification)
PERSON = table_of(Person)
SUPPRESSION = table_of(Suppression)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_DELIVERY_COLUMNS = [
    "notification_id",
    "person_id",
    "channel",
    "address",
    "state",
    "reason",
    "deadline",
    "due_at",
    "created_at",
    "updated_at",
    "attempts",
    "wait_quiet",
]


def address_column(channel: str) -> Any:
    """The ``person`` column with each person's address on ``channel`` (from its channel spec)."""
    return PERSON.c[spec(channel).address_column]


def new_notification_id() -> str:
    """Short, unguessable, easy to type in Slack: ``n`` + 9 base-32 characters."""
    return "n" + "".join(secrets.choice(_ALPHABET) for _ in range(9))


@dataclass(frozen=True, slots=True)
class NewNotification:
    id: str
    kind: str
    severity: str
    title: str
    body: str
    audience: str
    channels: tuple[str, ...]
    created_by: str
    created_at: float
    start_at: float
    deadline: float
    state: str = "queued"
    parent_id: str | None = None
    idempotency_key: str | None = None
    meta: dict[str, Any] | None = None


def find_by_key(store: Store, key: str) -> str | None:
    """The id of the notification stored under idempotency key ``key``, or None."""
    with store.begin() as connection:
        return _id_by_key(connection, key)


def ensure_notification(
    store: Store,
    new: NewNotification,
    people: ColumnElement[bool],
    rules: DeliveryRules | None = None,
    then: Callable[[Connection], None] | None = None,
) -> tuple[str, int | None]:
    """The notification with ``new.idempotency_key``: the one stored under it, else ``new`` written now
    with one delivery per (person matching ``people``, channel). Without a key, ``new`` is written.

    Returns ``(id, recipients)``; recipients is None when nothing was written because the key was
    taken, also by a concurrent writer. People without an address for a channel, or whose address is
    suppressed, get a delivery in state ``suppressed`` (reason ``no_address`` / ``suppressed``) so
    reports show them; so do people who turned the kind off on the channel (reason ``opted_out``, see
    :mod:`bot.recipients.rules`). Deliveries of a quiet kind to people inside their quiet hours are
    ``deferred`` (reason ``quiet_hours``) with ``due_at`` at the end of their window, unless that
    misses the deadline. ``rules`` None: preferences with the default mandatory kinds, no quiet hours.
    Before writing, addresses whose recent notifications all soft-failed are suppressed
    (:mod:`bot.recipients.soft_failures`). ``then`` runs last in the same transaction (the
    notification's later rungs are stored by it).
    """
    if new.idempotency_key:
        existing = find_by_key(store, new.idempotency_key)
        if existing is not None:
            return existing, None
    rules = rules or DeliveryRules()
    with store.begin() as connection:
        soft_failures.sweep(connection, new.created_at, rules.soft_failures)
        taken = _insert_notification(store, connection, new)
        if taken is not None:
            return taken, None
        _insert_deliveries(connection, new, people, rules)
        recipients = _count_recipients(connection, new.id, people)
        if then is not None:
            then(connection)
        _finish_or_announce(store, connection, new)
    return new.id, recipients


def _id_by_key(connection: Connection, key: str) -> str | None:
    value = connection.execute(
        select(NOTIFICATION.c.id).where(NOTIFICATION.c.idempotency_key == key)
    ).scalar_one_or_none()
    return str(value) if value else None


def _insert_notification(store: Store, connection: Connection, new: NewNotification) -> str | None:
    """Insert the notification row; None, or the id already stored under its key (nothing inserted).

    ``ON CONFLICT DO NOTHING``: a concurrent insert of the same key waits for the other transaction,
    then yields nothing, and the other's row is read back instead of raising an IntegrityError.
    """
    dialect_insert = sqlite.insert if store.is_sqlite else postgresql.insert
    statement = dialect_insert(NOTIFICATION).values(
        id=new.id,
        kind=new.kind,
        severity=new.severity,
        title=new.title,
        body=new.body,
        audience=new.audience,
        channels=",".join(new.channels),
        state=new.state,
        created_by=new.created_by,
        created_at=new.created_at,
        start_at=new.start_at,
        deadline=new.deadline,
        parent_id=new.parent_id,
        idempotency_key=new.idempotency_key,
        meta=json.dumps(new.meta or {}),
        recipients=0,
    )
    statement = statement.on_conflict_do_nothing(index_elements=["idempotency_key"])
    if connection.execute(statement.returning(NOTIFICATION.c.id)).first() is not None:
        return None
    assert new.idempotency_key, "only the key can conflict (another id would raise)"
    return _id_by_key(connection, new.idempotency_key)


def _insert_deliveries(
    connection: Connection, new: NewNotification, people: ColumnElement[bool], rules: DeliveryRules
) -> None:
    """One ``INSERT … SELECT`` per channel: a delivery for each person the audience query selects."""
    for channel in new.channels:
        rows = _delivery_rows(connection, new, people, rules, channel)
        connection.execute(DELIVERY.insert().from_select(_DELIVERY_COLUMNS, rows))


def insert_deliveries(
    store: Store,
    connection: Connection,
    new: NewNotification,
    people: ColumnElement[bool],
    rules: DeliveryRules,
) -> None:
    """Deliveries of ``new`` (already stored) on ``new.channels`` for ``people``: a later rung of
    its channel ladder (:mod:`bot.engine.rungs`); then dispatchers are told there is work."""
    _insert_deliveries(connection, new, people, rules)
    announce_work(store, connection, new.channels)


def _delivery_rows(
    connection: Connection,
    new: NewNotification,
    people: ColumnElement[bool],
    rules: DeliveryRules,
    channel: str,
) -> Select[Any]:
    """The delivery rows for ``channel``, in :data:`_DELIVERY_COLUMNS` order."""
    address = address_column(channel)
    due_at = recipient_rules.quiet_due_at(connection, rules, people, new.severity, new.start_at, new.deadline)
    state, reason = _state_and_reason(new, rules, channel, quiet=due_at > new.start_at)
    return (
        select(
            literal(new.id),
            PERSON.c.id,
            literal(channel),
            func.coalesce(address, ""),
            state,
            reason,
            literal(new.deadline),
            due_at,
            literal(new.created_at),
            literal(new.created_at),
            literal(0),
            due_at - literal(new.start_at, Float),  # held for quiet hours (why it was late)
        )
        .select_from(recipient_rules.with_settings(PERSON))
        .where(people)
    )


def _state_and_reason(
    new: NewNotification, rules: DeliveryRules, channel: str, quiet: ColumnElement[bool]
) -> tuple[Any, Any]:
    """Each person's first state and its reason: suppressed (no address, a suppressed address, the
    kind turned off), deferred (quiet hours), else queued; the first that holds wins."""
    address = address_column(channel)
    held = [
        (address.is_(None) | (address == ""), "suppressed", "no_address"),
        (
            exists().where(and_(SUPPRESSION.c.channel == channel, SUPPRESSION.c.address == address)),
            "suppressed",
            "suppressed",
        ),
        (recipient_rules.opted_out(rules, new.severity, channel), "suppressed", "opted_out"),
        (quiet, "deferred", "quiet_hours"),
    ]
    state = case(*((condition, value) for condition, value, _ in held), else_="queued")
    reason = case(*((condition, why) for condition, _, why in held), else_=None)
    return state, reason


def _count_recipients(connection: Connection, notification_id: str, people: ColumnElement[bool]) -> int:
    """Store how many people the audience selected (each has a delivery per channel)."""
    recipients = connection.execute(select(func.count()).select_from(PERSON).where(people)).scalar_one()
    connection.execute(
        update(NOTIFICATION).where(NOTIFICATION.c.id == notification_id).values(recipients=recipients)
    )
    return int(recipients)


def _finish_or_announce(store: Store, connection: Connection, new: NewNotification) -> None:
    """Nothing sendable (everyone suppressed): the notification is final right away. Else tell the
    dispatchers there is work (:func:`bot.engine.ledger.announce_work`)."""
    open_count = connection.execute(
        select(func.count())
        .select_from(DELIVERY)
        .where(DELIVERY.c.notification_id == new.id, DELIVERY.c.state.in_(OPEN_STATES))
    ).scalar_one()
    if open_count == 0 and new.state == "queued":
        connection.execute(
            update(NOTIFICATION)
            .where(NOTIFICATION.c.id == new.id)
            .values(state="done", finished_at=new.created_at)
        )
    elif open_count:
        announce_work(store, connection, new.channels)
