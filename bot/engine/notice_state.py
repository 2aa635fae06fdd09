"""A notification's own state: finished when nothing is left open, cancelled on request.

(The per-delivery claim, record and release steps are :mod:`bot.engine.ledger`.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, select, update

from bot.engine.ledger import DELIVERY, NOTIFICATION, OPEN_STATES, RUNG
from bot.store import Store
from bot.tables import CLAIMABLE


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a notification is, as `announce --wait` polls it (the full status is read at the end)."""

    state: str
    total: int  # deliveries
    left: int  # deliveries still open
    deadline: float


def progress(store: Store, notification_id: str) -> Progress | None:
    """The notification's state and its open deliveries: two index reads, whatever its size."""
    with store.begin() as connection:
        row = connection.execute(
            select(NOTIFICATION.c.state, NOTIFICATION.c.deadline).where(NOTIFICATION.c.id == notification_id)
        ).first()
        if row is None:
            return None
        counts = connection.execute(
            select(DELIVERY.c.state, func.count())
            .where(DELIVERY.c.notification_id == notification_id)
            .group_by(DELIVERY.c.state)
        ).all()
    left = sum(int(count) for state, count in counts if state in OPEN_STATES)
    return Progress(str(row.state), sum(int(count) for _, count in counts), left, float(row.deadline or 0.0))


def cancelled_among(store: Store, ids: Iterable[str]) -> set[str]:
    """Which of these notifications were cancelled."""
    id_list = list(ids)
    if not id_list:
        return set()
    with store.one_statement() as connection:
        return {
            str(row[0])
            for row in connection.execute(
                select(NOTIFICATION.c.id).where(
                    NOTIFICATION.c.id.in_(id_list), NOTIFICATION.c.state == "cancelled"
                )
            )
        }


def finish_notifications(store: Store, now: float, ids: Iterable[str] | None = None) -> list[str]:
    """Mark notifications with no open delivery and no pending rung (bot.engine.rungs) left as done;
    returns the ids that finished."""
    still_open = exists().where(
        DELIVERY.c.notification_id == NOTIFICATION.c.id, DELIVERY.c.state.in_(OPEN_STATES)
    )
    pending_rung = exists().where(RUNG.c.notification_id == NOTIFICATION.c.id, RUNG.c.started_at.is_(None))
    condition = and_(NOTIFICATION.c.state.in_(("scheduled", "queued", "sending")), ~still_open, ~pending_rung)
    id_list = list(ids) if ids is not None else None
    if id_list is not None:
        if not id_list:
            return []
        condition = and_(condition, NOTIFICATION.c.id.in_(id_list))
    with store.begin() as connection:
        finished = [
            row[0]
            for row in connection.execute(
                update(NOTIFICATION)
                .where(condition)
                .values(state="done", finished_at=now)
                .returning(NOTIFICATION.c.id)
            ).all()
        ]
    return finished


def cancel(store: Store, notification_id: str, now: float) -> int:
    """Cancel every delivery not yet handed to a provider; returns how many."""
    with store.begin() as connection:
        result = connection.execute(
            update(DELIVERY)
            .where(DELIVERY.c.notification_id == notification_id, DELIVERY.c.state.in_(CLAIMABLE))
            .values(state="cancelled", reason="cancelled", updated_at=now)
        )
        connection.execute(
            update(NOTIFICATION)
            .where(NOTIFICATION.c.id == notification_id, NOTIFICATION.c.state.not_in(("done",)))
            .values(state="cancelled", finished_at=now)
        )
    return int(result.rowcount)
