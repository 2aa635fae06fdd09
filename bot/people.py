"""People, not just deliveries: who a notification reached, and whether that met its SLA.

A person (over all their deliveries of one notification, every channel) is

- ``reached`` when at least one delivery was ``sent`` or ``delivered`` by its deadline;
- ``unreached`` when they had a usable address but no delivery succeeded in time: failed, expired,
  sent only after the deadline, or still waiting (queued, deferred — also for a channel outage —, or
  being sent);
- ``cancelled`` when nothing was sent in time because the notification was cancelled before its
  deadline (their remaining deliveries are ``cancelled``; the rest, if any, ``suppressed``). A
  delivery cancelled after the deadline was still waiting when the deadline passed: its person is
  ``unreached``, so a cancel never turns a missed SLA into a met one;
- ``unreachable`` when they had no usable address: every delivery of theirs is ``suppressed`` (no
  address, opted out, a suppressed address).

``reach`` = reached / (reached + unreached), 1.0 when nobody counts. :func:`sla_met` judges the SLA.
The counts come from one aggregate query per notification (:func:`people_counts`), grouped by person
in the database, whatever the size of the audience.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Float, Select, and_, case, cast, exists, func, literal, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause

from bot.config import DEFAULT_SLA, Settings
from bot.tables import OPEN_STATES, Delivery, Notification, table_of

DELIVERY = table_of(Delivery)
NOTIFICATION = table_of(Notification)

_IN_TIME = and_(
    DELIVERY.c.state.in_(("sent", "delivered")),
    DELIVERY.c.sent_at.is_not(None),
    DELIVERY.c.sent_at <= DELIVERY.c.deadline,
)
# Cancelled after the deadline: it was still waiting when the deadline passed (``updated_at`` is
# when it was cancelled; a cancelled delivery never changes again).
CANCELLED_LATE = and_(DELIVERY.c.state == "cancelled", DELIVERY.c.updated_at > DELIVERY.c.deadline)
_USABLE = or_(DELIVERY.c.state.not_in(("suppressed", "cancelled")), CANCELLED_LATE)
_CANCELLED = and_(DELIVERY.c.state == "cancelled", ~CANCELLED_LATE)


@dataclass(frozen=True, slots=True)
class People:
    """How many people a notification reached, did not reach, could not reach, or stopped for."""

    reached: int = 0
    unreached: int = 0
    unreachable: int = 0
    cancelled: int = 0
    confirmed: int = 0

    @property
    def reach(self) -> float:
        judged = self.reached + self.unreached
        return self.reached / judged if judged else 1.0

    def as_json(self) -> dict[str, int]:
        return {
            "reached": self.reached,
            "unreached": self.unreached,
            "unreachable": self.unreachable,
            "cancelled": self.cancelled,
            "confirmed": self.confirmed,
        }

    def __add__(self, other: People) -> People:
        return People(
            self.reached + other.reached,
            self.unreached + other.unreached,
            self.unreachable + other.unreachable,
            self.cancelled + other.cancelled,
            self.confirmed + other.confirmed,
        )


def _flag(condition: ColumnElement[bool], name: str) -> Any:
    return func.max(case((condition, 1), else_=0)).label(name)


def _sum(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def people_query(
    source: FromClause, where: ColumnElement[bool], keys: Sequence[ColumnElement[Any]] = ()
) -> Select[Any]:
    """Per ``keys`` (none: one row), the counts of :class:`People` in field order (without
    ``confirmed``) over the deliveries of ``source`` matching ``where``, one person per row inside."""
    labelled = [key.label(f"k{index}") for index, key in enumerate(keys)]
    person = (
        select(*labelled, _flag(_IN_TIME, "ok"), _flag(_USABLE, "usable"), _flag(_CANCELLED, "stopped"))
        .select_from(source)
        .where(where)
        .group_by(*keys, DELIVERY.c.person_id)
        .subquery()
    )
    ok, usable, stopped = person.c.ok == 1, person.c.usable == 1, person.c.stopped == 1
    outer_keys = [person.c[f"k{index}"] for index in range(len(keys))]
    return select(
        *outer_keys,
        _sum(ok),
        _sum(and_(~ok, usable)),
        _sum(and_(~ok, ~usable, ~stopped)),
        _sum(and_(~ok, ~usable, stopped)),
    ).group_by(*outer_keys)


def people_counts(connection: Connection, notification_id: str) -> People:
    """The people of one notification (one aggregate query)."""
    row = connection.execute(people_query(DELIVERY, DELIVERY.c.notification_id == notification_id)).first()
    return People(*(int(n) for n in row)) if row is not None else People()


def sla_met(people: People, target: float, *, running: bool, missed: bool) -> bool | None:
    """The SLA verdict: None while ``running`` (deliveries open before the deadline), and None for a
    notification cancelled before anyone was judged (nothing sent, nothing missed: no verdict);
    else met when nothing ``missed`` it (a delivery late, expired, or open past the deadline) and
    ``reach`` is at least ``target``."""
    if running:
        return None
    if not missed and people.cancelled and not people.reached + people.unreached:
        return None
    return not missed and people.reach >= target


def sla_document(
    row: Mapping[str, Any],
    sent: tuple[float | None, float | None],
    people: People,
    target: float,
    *,
    running: bool,
    missed: bool,
) -> dict[str, Any]:
    """The ``sla`` part of the status JSON of the notification ``row`` (``start_at``, ``deadline``),
    given its first and last ``sent`` times; a delivery sent after the deadline is a miss too."""
    first_sent, last_sent = sent
    start = row["start_at"]
    late = last_sent is not None and last_sent > row["deadline"]
    return {
        "deliver_within_s": row["deadline"] - start,
        "first_delivery_s": (first_sent - start) if first_sent is not None else None,
        "last_delivery_s": (last_sent - start) if last_sent is not None else None,
        "reach": people.reach,
        "reach_target": target,
        "met": sla_met(people, target, running=running, missed=missed or late),
    }


@dataclass(frozen=True, slots=True)
class ReachTargets:
    """``[sla.<severity>] reach`` per severity, and the target of a severity not configured."""

    by_severity: Mapping[str, float]
    default: float

    @classmethod
    def of(cls, settings: Settings) -> ReachTargets:
        return cls({name: policy.reach for name, policy in settings.sla.items()}, settings.sla_for("").reach)

    @classmethod
    def defaults(cls) -> ReachTargets:
        """The targets of the built-in ``[sla]`` sections (for callers without settings)."""
        found = {name: float(section.get("reach", 1.0)) for name, section in DEFAULT_SLA.items()}
        return cls(found, found["info"])


def reach_missed(targets: ReachTargets, now: float) -> Select[Any]:
    """The ids of judged notifications (done, or past their deadline) whose reach is below their
    severity's target. Only notifications with a delivery failed, expired or still open (found
    through the (notification, state) index, no scan of the ledger) are grouped by person: one
    whose only shortfall is a delivery sent late is late anyway, which callers count apart."""
    short = exists().where(
        DELIVERY.c.notification_id == NOTIFICATION.c.id,
        or_(DELIVERY.c.state.in_(("failed", "expired", *OPEN_STATES)), CANCELLED_LATE),
    )
    judged = or_(NOTIFICATION.c.state == "done", NOTIFICATION.c.deadline < now)
    doubtful = select(NOTIFICATION.c.id).where(judged, short)
    source = DELIVERY.join(NOTIFICATION, NOTIFICATION.c.id == DELIVERY.c.notification_id)
    where = DELIVERY.c.notification_id.in_(doubtful)
    per = people_query(source, where, [NOTIFICATION.c.id, NOTIFICATION.c.severity]).subquery()
    reached, unreached = per.c[2], per.c[3]
    target: Any = literal(targets.default)
    if targets.by_severity:
        target = case(dict(targets.by_severity), value=per.c[1], else_=targets.default)
    reach = cast(reached, Float) / func.nullif(reached + unreached, 0)
    return select(per.c[0]).where(reach < target)
