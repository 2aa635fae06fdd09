"""Reach: who an audience selects and who each channel can reach, counted in the database.

:func:`reach` runs one aggregate query over the people :mod:`bot.directory.audience_sql` selects,
plus a small sample of them. ``Reach.unreachable`` maps channel → reason → count with reasons
``no_email`` / ``no_phone`` / ``no_slack_user`` (no address: the channel spec's ``unreachable``) and
``suppressed`` (the address is on the suppression list for that channel), plus ``opted_out`` when
:func:`reach` is given opt-outs (the person turned the notice's kind off on that channel); a person
is counted under the first reason that applies, in that order. ``Reach.flat_unreachable()`` gives
the one-level map of ``herald directory show --json``:
``no_email``, ``no_phone``, ``no_slack_user``, ``suppressed_email``, ``suppressed_sms``...
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, case, false, func, not_, or_, select
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bot.channel_specs import CHANNELS
from bot.config import CHANNEL_NAMES
from bot.directory.audience import Audience
from bot.directory.audience_sql import PERSON, PERSON_GROUP, audience_condition, audience_match
from bot.store import Store
from bot.tables import Suppression

SUPPRESSION = SQLModel.metadata.tables[Suppression.__tablename__]


@dataclass(frozen=True)
class PersonSummary:
    id: str
    name: str
    email: str | None
    phone: str | None
    department: str | None
    site: str | None
    title: str | None
    language: str | None = None
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reach:
    """Who an audience selects and who each channel reaches (see the module docstring for reasons)."""

    count: int
    inactive: int
    reachable: Mapping[str, int]
    unreachable: Mapping[str, Mapping[str, int]]
    sample: tuple[PersonSummary, ...]

    def flat_unreachable(self) -> dict[str, int]:
        flat: dict[str, int] = {}
        for channel, reasons in self.unreachable.items():
            for reason, n in reasons.items():
                flat[reason if reason.startswith("no_") else f"{reason}_{channel}"] = n
        return flat


def _address(channel: str) -> ColumnElement[str | None]:
    column: ColumnElement[str | None] = PERSON.c[CHANNELS[channel].address_column]
    return column


def _suppressed(channel: str) -> ColumnElement[bool]:
    # An uncorrelated IN: both databases read the suppression list once (SQLite into a temporary
    # index, PostgreSQL into a hash), whatever the size of the audience. Emails are compared
    # lower-case, as people's emails are stored.
    address = SUPPRESSION.c.address
    listed = select(func.lower(address) if CHANNELS[channel].fold_case else address).where(
        SUPPRESSION.c.channel == channel
    )
    return _address(channel).in_(listed.scalar_subquery())


def reach(
    store: Store,
    audience: Audience,
    channels: Sequence[str] = CHANNEL_NAMES,
    slack_groups: Mapping[str, Collection[str]] | None = None,
    sample: int = 10,
    opted_out: Mapping[str, ColumnElement[bool]] | None = None,
) -> Reach:
    """Count the audience and its reach per channel with one aggregate query, plus a sample.

    A query matching no one gives ``count == 0``; deciding whether that is an error is the caller's.
    Raise ValueError for a channel that is not registered (:data:`bot.channel_specs.CHANNELS`).
    ``opted_out`` maps a channel to a condition over ``person`` (who turned the notice's kind off there, from
    :func:`bot.recipients.rules.opt_out_conditions`); those people count under reason ``opted_out``.
    """
    unknown = [channel for channel in channels if channel not in CHANNELS]
    if unknown:
        raise ValueError(f"unknown channel {unknown[0]!r} (expected one of {', '.join(CHANNELS)})")
    columns = _reach_columns(channels, opted_out or {})
    with store.begin() as connection:
        row = connection.execute(
            select(*columns).select_from(PERSON).where(audience_match(audience, slack_groups))
        ).one()
        people = _sample(connection, audience_condition(audience, slack_groups), sample)
    return _read_reach([int(n) for n in row], channels, opted_out, people)


def anyone(
    store: Store, audience: Audience, slack_groups: Mapping[str, Collection[str]] | None = None
) -> bool:
    """Whether the audience selects anyone (``reach(...).count > 0``) without counting anybody."""
    with store.begin() as connection:
        found = connection.execute(
            select(PERSON.c.id).where(audience_condition(audience, slack_groups)).limit(1)
        ).first()
    return found is not None


def _total(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _reach_columns(
    channels: Sequence[str], opted_out: Mapping[str, ColumnElement[bool]]
) -> list[ColumnElement[int]]:
    """Active and inactive people, then per channel: no address, suppressed, opted out (each counted
    under the first reason that applies)."""
    active = PERSON.c.active.is_(True)
    columns = [_total(active), _total(not_(active))]
    for channel in channels:
        address = _address(channel)
        missing = or_(address.is_(None), address == "")
        suppressed = _suppressed(channel)
        opted = opted_out.get(channel, false())
        columns += [
            _total(and_(active, missing)),
            _total(and_(active, not_(missing), suppressed)),
            _total(and_(active, not_(missing), not_(suppressed), opted)),
        ]
    return columns


def _read_reach(
    row: Sequence[int],
    channels: Sequence[str],
    opted_out: Mapping[str, ColumnElement[bool]] | None,
    people: tuple[PersonSummary, ...],
) -> Reach:
    """The :class:`Reach` from the counts of :func:`_reach_columns` (in its order)."""
    count, inactive = row[0], row[1]
    reachable: dict[str, int] = {}
    unreachable: dict[str, dict[str, int]] = {}
    for index, channel in enumerate(channels):
        no_address, suppressed_n, opted_n = row[2 + 3 * index : 5 + 3 * index]
        unreachable[channel] = {CHANNELS[channel].unreachable: no_address, "suppressed": suppressed_n}
        if opted_out is not None and channel in opted_out:
            unreachable[channel]["opted_out"] = opted_n
        reachable[channel] = count - no_address - suppressed_n - opted_n
    return Reach(count, inactive, reachable, unreachable, people)


def _sample(connection: Connection, condition: ColumnElement[bool], limit: int) -> tuple[PersonSummary, ...]:
    if limit <= 0:
        return ()
    person = PERSON.c
    rows = connection.execute(
        select(
            person.id,
            person.name,
            person.email,
            person.phone,
            person.department,
            person.site,
            person.title,
            person.language,
        )
        .where(condition)
        .order_by(person.name, person.id)
        .limit(limit)
    ).all()
    groups: dict[str, list[str]] = {}
    if rows:
        memberships = select(PERSON_GROUP.c.person_id, PERSON_GROUP.c.group_name).where(
            PERSON_GROUP.c.person_id.in_([row.id for row in rows])
        )
        for person_id, name in connection.execute(memberships.order_by(PERSON_GROUP.c.group_name)):
            groups.setdefault(person_id, []).append(name)
    return tuple(PersonSummary(*row, groups=tuple(groups.get(row.id, ()))) for row in rows)
