"""The channel ladder's later rungs in the database (the planner is :mod:`bot.engine.ladder`).

A notification announced with ``--channels slack,email>sms`` gets its first rung's deliveries at
once and one ``rung`` row per later rung (written in the same transaction). The rung tick
(:mod:`bot.engine.ladder_tick`) starts a rung by claiming its row (``started_at`` set where it is
still NULL: one process wins, a restart sees it started) and, in the same transaction, creating
deliveries on its channels for the people left: with ``--confirm`` those who have not confirmed,
else those not yet reached (no delivery sent or delivered). So a restart neither skips a rung (the
row stays pending until its deliveries exist) nor repeats one (the claim is made once).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.engine import Connection

from bot.config import Settings
from bot.engine.create import NewNotification, insert_deliveries
from bot.recipients.rules import DeliveryRules
from bot.recipients.tables import Confirmation
from bot.store import Store
from bot.tables import Delivery, Notification, Person, Rung, table_of

RUNG = table_of(Rung)
DELIVERY = table_of(Delivery)
NOTIFICATION = table_of(Notification)
PERSON = table_of(Person)
CONFIRMATION = table_of(Confirmation)
REACHED_STATES = ("sent", "delivered")


@dataclass(frozen=True, slots=True)
class PendingRung:
    notification_id: str
    idx: int
    channels: tuple[str, ...]
    deadline: float
    severity: str
    title: str
    body: str
    confirm: bool


def rung_deadline(settings: Settings, new: NewNotification) -> float:
    """When a later rung must have reached the people left: ``confirm_within`` (default
    ``deliver_within``) after the start when recipients confirm, else the notification's deadline."""
    if not (new.meta or {}).get("confirm"):
        return new.deadline
    sla = settings.sla_for(new.severity)
    return new.start_at + (sla.confirm_within or sla.deliver_within)


def with_confirm(settings: Settings, severity: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A notification's meta with ``confirm`` set when asked, or when ``[sla.<severity>] confirm``."""
    if meta.get("confirm") or settings.sla_for(severity).confirm:
        return {**meta, "confirm": True}
    return meta


def storer(
    settings: Settings, new: NewNotification, later: Sequence[tuple[str, ...]]
) -> Callable[[Connection], None] | None:
    """What stores ``new``'s later rungs inside its creating transaction; None without any."""
    if not later:
        return None
    deadline = rung_deadline(settings, new)
    return lambda connection: add_rungs(connection, new.id, later, deadline)


def add_rungs(
    connection: Connection, notification_id: str, later: Sequence[tuple[str, ...]], deadline: float
) -> None:
    """Store the later rungs (index 1 on) of a notification, all pending."""
    for idx, channels in enumerate(later, start=1):
        connection.execute(
            RUNG.insert().values(
                notification_id=notification_id,
                idx=idx,
                channels=",".join(channels),
                deadline=deadline,
                people=0,
            )
        )


def pending_exists() -> ColumnElement[bool]:
    """For ``notification`` rows: a rung of it has not started yet (the notification is not done)."""
    return (
        select(RUNG.c.idx)
        .where(RUNG.c.notification_id == NOTIFICATION.c.id, RUNG.c.started_at.is_(None))
        .exists()
    )


def left_condition(notification_id: str, confirm: bool) -> ColumnElement[bool]:
    """People of the notification still left for its next rung (a condition on ``person``)."""
    recipients = select(DELIVERY.c.person_id).where(DELIVERY.c.notification_id == notification_id)
    if confirm:
        done = select(CONFIRMATION.c.person_id).where(CONFIRMATION.c.notification_id == notification_id)
    else:
        done = select(DELIVERY.c.person_id).where(
            DELIVERY.c.notification_id == notification_id, DELIVERY.c.state.in_(REACHED_STATES)
        )
    return and_(PERSON.c.id.in_(recipients), PERSON.c.id.not_in(done))


def count_left(store: Store, rung: PendingRung) -> int:
    with store.begin() as connection:
        value = connection.execute(
            select(func.count()).select_from(PERSON).where(left_condition(rung.notification_id, rung.confirm))
        ).scalar_one()
    return int(value)


def pending(store: Store, now: float) -> list[PendingRung]:
    """Per notification under way (not cancelled, started), its next rung not started yet."""
    query = (
        select(RUNG, NOTIFICATION.c.severity, NOTIFICATION.c.title, NOTIFICATION.c.body, NOTIFICATION.c.meta)
        .join(NOTIFICATION, NOTIFICATION.c.id == RUNG.c.notification_id)
        .where(
            RUNG.c.started_at.is_(None), NOTIFICATION.c.state != "cancelled", NOTIFICATION.c.start_at <= now
        )
        .order_by(RUNG.c.notification_id, RUNG.c.idx)
    )
    with store.begin() as connection:
        rows = connection.execute(query).all()
    found: dict[str, PendingRung] = {}
    for row in rows:
        if row.notification_id in found:
            continue
        meta = json.loads(row.meta or "{}")
        found[row.notification_id] = PendingRung(
            str(row.notification_id),
            int(row.idx),
            tuple(str(row.channels).split(",")),
            float(row.deadline),
            str(row.severity),
            str(row.title),
            str(row.body),
            bool(meta.get("confirm")),
        )
    return list(found.values())


def start(store: Store, rung: PendingRung, rules: DeliveryRules, now: float) -> int | None:
    """Start ``rung``: claim it and create its deliveries for the people left, in one transaction.
    How many people it went to; None when another process (or an earlier run) started it."""
    condition = left_condition(rung.notification_id, rung.confirm)
    with store.begin() as connection:
        left = int(connection.execute(select(func.count()).select_from(PERSON).where(condition)).scalar_one())
        claimed = connection.execute(
            update(RUNG)
            .where(
                RUNG.c.notification_id == rung.notification_id,
                RUNG.c.idx == rung.idx,
                RUNG.c.started_at.is_(None),
                _still_wanted(rung.notification_id),
            )
            .values(started_at=now, people=left)
        ).rowcount
        if not claimed:
            return None
        if left:
            _create(store, connection, rung, condition, rules, now)
    return left


def _still_wanted(notification_id: str) -> ColumnElement[bool]:
    """The notification has not been cancelled (a cancel may land between planning and starting)."""
    return (
        select(NOTIFICATION.c.id)
        .where(NOTIFICATION.c.id == notification_id, NOTIFICATION.c.state != "cancelled")
        .exists()
    )


def _create(
    store: Store,
    connection: Connection,
    rung: PendingRung,
    people: ColumnElement[bool],
    rules: DeliveryRules,
    now: float,
) -> None:
    row = connection.execute(select(NOTIFICATION).where(NOTIFICATION.c.id == rung.notification_id)).one()
    new = NewNotification(
        id=row.id,
        kind=row.kind,
        severity=row.severity,
        title=row.title,
        body=row.body,
        audience=row.audience,
        channels=rung.channels,
        created_by=row.created_by,
        created_at=now,
        start_at=now,
        deadline=row.deadline,
    )
    insert_deliveries(store, connection, new, people, rules)
    channels = ",".join(dict.fromkeys([*str(row.channels).split(","), *rung.channels]))
    values: dict[str, object] = {"channels": channels}
    if row.state == "done":
        values.update(state="queued", finished_at=None)
    connection.execute(update(NOTIFICATION).where(NOTIFICATION.c.id == rung.notification_id).values(**values))


def rungs_of(connection: Connection, notification_id: str) -> list[dict[str, object]]:
    """The later rungs of a notification for its status: channels, deadline, started_at, people."""
    rows = connection.execute(
        select(RUNG).where(RUNG.c.notification_id == notification_id).order_by(RUNG.c.idx)
    ).all()
    return [
        {
            "rung": r.idx,
            "channels": str(r.channels).split(","),
            "started_at": r.started_at,
            "people": r.people,
        }
        for r in rows
    ]
