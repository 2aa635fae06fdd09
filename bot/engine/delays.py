"""Why a notification was late: its deliveries' waits (:mod:`bot.engine.timings`) summed by cause.

SPEC's ``sla.delays``: seconds per cause summed over the deliveries handed over after the deadline,
or over the slowest 1 % of those handed over when none was late. A delivery's time runs from the
notification's start to its hand-over (``sent_at``); ``queue`` is what its recorded waits (throttle,
quiet hours, retries, provider, channel outage) leave unexplained. Sums are taken in the database,
one aggregate per notification, whatever the size of the audience.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.engine import Connection

from bot.tables import Delivery, Person, table_of

DELIVERY = table_of(Delivery)
PERSON = table_of(Person)

CAUSES = ("queue", "throttle", "quiet_hours", "retry", "provider", "channel_down")
SLOWEST_SHARE = 0.01
SLOWEST_NAMED = 5

# The recorded waits, in CAUSES order after ``queue``.
_WAITS = (
    DELIVERY.c.wait_throttle,
    DELIVERY.c.wait_quiet,
    DELIVERY.c.wait_retry,
    DELIVERY.c.wait_provider,
    DELIVERY.c.wait_down,
)
_HANDED_OVER = and_(DELIVERY.c.state.in_(("sent", "delivered")), DELIVERY.c.sent_at.is_not(None))


def attribute(total: float, waits: Mapping[str, float]) -> dict[str, float]:
    """Seconds per cause (every one of :data:`CAUSES`) for ``total`` seconds of waiting of which
    ``waits`` explains part: ``queue`` is the rest, never below zero."""
    causes = {cause: max(0.0, float(waits.get(cause, 0.0))) for cause in CAUSES if cause != "queue"}
    return {"queue": max(0.0, total - sum(causes.values())), **causes}


def dominant(delays: Mapping[str, float]) -> str | None:
    """The cause with the most seconds (the first of :data:`CAUSES` on a tie); None when none has any."""
    cause = max(CAUSES, key=lambda name: delays.get(name, 0.0))
    return cause if delays.get(cause, 0.0) > 0 else None


def ranked(delays: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(cause, seconds, share of the total) for the causes with any seconds, the largest first."""
    total = sum(delays.get(cause, 0.0) for cause in CAUSES)
    found = [(cause, delays.get(cause, 0.0)) for cause in CAUSES if delays.get(cause, 0.0) > 0]
    found.sort(key=lambda item: -item[1])
    return [(cause, seconds, seconds / total) for cause, seconds in found]


def notification_delays(connection: Connection, row: Mapping[str, Any]) -> dict[str, Any]:
    """``{"delays": {cause: s}, "delays_over": {"basis": "late"|"slowest", "deliveries": n}}`` for
    the notification ``row`` (``id``, ``start_at``, ``deadline``)."""
    start, mine = row["start_at"], DELIVERY.c.notification_id == row["id"]
    # One pass: the late ones' sums and, should there be none, how many were handed over at all.
    late = DELIVERY.c.sent_at > row["deadline"]
    handed_over, count, *sums = connection.execute(_sums(start, late=late).where(mine, _HANDED_OVER)).one()
    basis = "late"
    if not count:
        basis = "slowest"
        slowest = (
            select(DELIVERY.c.sent_at, *_WAITS)
            .where(mine, _HANDED_OVER)
            .order_by(DELIVERY.c.sent_at.desc())
            .limit(math.ceil(handed_over * SLOWEST_SHARE))
            .subquery()
        )
        count, *sums = connection.execute(_sums(start, slowest.c)).one()
    total, *waits = (float(value or 0.0) for value in sums)
    delays = attribute(total, dict(zip(CAUSES[1:], waits, strict=True)))
    return {
        "delays": {cause: round(seconds, 3) for cause, seconds in delays.items()},
        "delays_over": {"basis": basis, "deliveries": int(count or 0)},
    }


def _sums(start: float, columns: Any = DELIVERY.c, late: Any = None) -> Select[Any]:
    """count, the summed time from ``start`` to hand-over, and each summed wait in CAUSES order; with
    ``late``, over the rows it holds for only (the query's first column is then the count of all)."""
    waits = [columns[column.name] for column in _WAITS]
    sums = [func.count(), func.sum(columns.sent_at - start), *(func.sum(wait) for wait in waits)]
    if late is None:
        return select(*sums)
    return select(func.count(), *(aggregate.filter(late) for aggregate in sums))


def slowest(
    connection: Connection, row: Mapping[str, Any], limit: int = SLOWEST_NAMED
) -> list[dict[str, Any]]:
    """The ``limit`` deliveries of the notification ``row`` handed over last: who, on which channel,
    how long after the start, and why."""
    start = row["start_at"]
    rows = connection.execute(
        select(DELIVERY.c.person_id, PERSON.c.name, DELIVERY.c.channel, DELIVERY.c.sent_at, *_WAITS)
        .select_from(DELIVERY.outerjoin(PERSON, PERSON.c.id == DELIVERY.c.person_id))
        .where(DELIVERY.c.notification_id == row["id"], _HANDED_OVER)
        .order_by(DELIVERY.c.sent_at.desc(), DELIVERY.c.id)
        .limit(limit)
    ).all()
    return [_slow_one(item, start) for item in rows]


def _slow_one(item: Any, start: float) -> dict[str, Any]:
    person_id, name, channel, sent_at, *waits = item
    total = float(sent_at) - start
    delays = attribute(total, dict(zip(CAUSES[1:], (float(w or 0.0) for w in waits), strict=True)))
    return {
        "person": person_id,
        "name": name or "",
        "channel": channel,
        "total_s": round(total, 3),
        "cause": dominant(delays),
        "delays": {cause: round(seconds, 3) for cause, seconds in delays.items()},
    }


def miss_cause(status: Mapping[str, Any]) -> str | None:
    """Why a notification missed its SLA (None unless it did): the dominant cause of the deliveries
    handed over late; else ``channel_down`` when an outage holds what is left, the dominant wait of
    the slowest when deliveries are still waiting, or ``unreached`` (failures, not lateness)."""
    sla = status["sla"]
    if sla.get("met") is not False:
        return None
    if sla["delays_over"]["basis"] == "late":
        return dominant(sla["delays"])
    if status.get("channels_down"):
        return "channel_down"
    if status.get("left"):
        return dominant(sla["delays"]) or "queue"
    return "unreached"


def miss_causes(items: list[dict[str, Any]]) -> dict[str, int]:
    """Set ``sla.cause`` on each status document of ``items``; how many missed for each cause."""
    counts: dict[str, int] = {}
    for item in items:
        cause = item["sla"]["cause"] = miss_cause(item)
        if cause is not None:
            counts[cause] = counts.get(cause, 0) + 1
    return counts
