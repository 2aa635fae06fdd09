"""What the ledger applies to each (person, channel) when it creates a notification's deliveries.

:class:`DeliveryRules` is built once from settings by :func:`delivery_rules`. The ledger turns it into
SQL for its one ``INSERT … SELECT`` per channel:

- :func:`opted_out` — a condition over ``person``: the person turned this kind off on this channel
  (never true for a mandatory kind). Such deliveries are stored ``suppressed`` / ``opted_out``.
- :func:`quiet_due_at` — an expression over ``person`` (joined to ``person_settings``): when the
  delivery may go. People are grouped by (timezone, quiet-hours override); each group's time is
  worked out once in Python (:func:`bot.recipients.quiet_hours.due_at`) and the groups become one
  ``CASE``. Deliveries that must wait are stored ``deferred`` / ``quiet_hours``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, case, false, func, literal, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause
from sqlmodel import SQLModel

from bot.config import KindSettings, Settings
from bot.recipients.quiet_hours import QuietWindow, due_at, zone
from bot.recipients.soft_failures import SoftFailurePolicy
from bot.recipients.tables import ALL_KINDS, PersonSettings, Preference
from bot.tables import Person

PERSON = SQLModel.metadata.tables[Person.__tablename__]
PREFERENCE = SQLModel.metadata.tables[Preference.__tablename__]
PERSON_SETTINGS = SQLModel.metadata.tables[PersonSettings.__tablename__]

DEFAULT_MANDATORY = frozenset(KindSettings().mandatory)
URGENT = frozenset({"critical", "outage", "security"})  # never quiet, whatever the config lists
DEFAULT_TIMEZONE = "UTC"  # for people without a timezone (config ``quiet_hours.timezone``)


@dataclass(frozen=True, slots=True)
class QuietPolicy:
    window: QuietWindow
    kinds: frozenset[str]
    default_timezone: str = DEFAULT_TIMEZONE


@dataclass(frozen=True, slots=True)
class DeliveryRules:
    """Mandatory kinds (never opted out of), quiet hours (None: off) and the soft-failure rule."""

    mandatory: frozenset[str] = DEFAULT_MANDATORY
    quiet: QuietPolicy | None = None
    non_mandatory: tuple[str, ...] = ("maintenance", "info")
    soft_failures: SoftFailurePolicy = field(default_factory=SoftFailurePolicy)

    def is_mandatory(self, kind: str) -> bool:
        return kind in self.mandatory

    def window_for(self, mode: str | None, start: str | None, end: str | None) -> QuietWindow | None:
        """A person's effective window from their override (``mode`` None: no override stored)."""
        if self.quiet is None or mode == "off":
            return None
        if mode == "custom" and start and end:
            try:
                return QuietWindow.parse(start, end)
            except ValueError:
                return self.quiet.window
        return self.quiet.window

    def due_at(
        self, start_at: float, deadline: float, kind: str, timezone: str | None, window: QuietWindow | None
    ) -> float:
        if self.quiet is None:
            return start_at
        tz = zone(timezone, self.quiet.default_timezone)
        return due_at(start_at, deadline, kind, self.quiet.kinds, tz, window)


def delivery_rules(settings: Settings) -> DeliveryRules:
    mandatory = frozenset(settings.kinds.mandatory)
    quiet_kinds = frozenset(settings.quiet_hours.kinds) - mandatory - URGENT
    quiet = None
    if quiet_kinds:
        quiet = QuietPolicy(
            window=QuietWindow.parse(settings.quiet_hours.start, settings.quiet_hours.end),
            kinds=quiet_kinds,
            default_timezone=settings.quiet_hours.timezone,
        )
    return DeliveryRules(
        mandatory=mandatory,
        quiet=quiet,
        non_mandatory=tuple(kind for kind in settings.sla if kind not in mandatory),
    )


def opted_out(rules: DeliveryRules, kind: str, channel: str) -> ColumnElement[bool]:
    """People who turned ``kind`` off on ``channel``: an explicit ``off`` for the kind, or ``off`` for
    every kind (``*``) without an explicit ``on`` for this one. An uncorrelated IN, read once."""
    if rules.is_mandatory(kind):
        return false()
    pref = PREFERENCE.c
    turned_on = select(pref.person_id).where(
        pref.channel == channel, pref.kind == kind, pref.enabled.is_(True)
    )
    off = select(pref.person_id).where(
        pref.channel == channel,
        pref.enabled.is_(False),
        (pref.kind == kind)
        | and_(pref.kind == ALL_KINDS, pref.person_id.not_in(turned_on.scalar_subquery())),
    )
    return PERSON.c.id.in_(off.scalar_subquery())


def opt_out_conditions(
    rules: DeliveryRules, kind: str, channels: Collection[str]
) -> Mapping[str, ColumnElement[bool]]:
    """Per channel, :func:`opted_out` (for :func:`bot.directory.reach.reach`'s ``opted_out``)."""
    return {channel: opted_out(rules, kind, channel) for channel in channels}


def with_settings(people: FromClause) -> FromClause:
    """``person`` LEFT JOIN ``person_settings``: what :func:`quiet_due_at`'s expression reads."""
    return people.outerjoin(PERSON_SETTINGS, PERSON_SETTINGS.c.person_id == PERSON.c.id)


def quiet_due_at(
    connection: Connection,
    rules: DeliveryRules,
    people: ColumnElement[bool],
    kind: str,
    start_at: float,
    deadline: float,
) -> ColumnElement[float]:
    """When each selected person's delivery may go: ``start_at``, or the end of their quiet window.

    Select from :func:`with_settings` (``person`` joined to ``person_settings``) to use it.
    """
    if rules.quiet is None or kind not in rules.quiet.kinds or rules.is_mandatory(kind):
        return literal(start_at)
    ps = PERSON_SETTINGS.c
    tz_col = func.coalesce(PERSON.c.timezone, "")
    mode_col = func.coalesce(ps.quiet_mode, "default")
    start_col = func.coalesce(ps.quiet_start, "")
    end_col = func.coalesce(ps.quiet_end, "")
    groups = connection.execute(
        select(tz_col, mode_col, start_col, end_col)
        .distinct()
        .select_from(with_settings(PERSON))
        .where(people)
    ).all()
    whens = []
    for timezone, mode, start, end in groups:
        window = rules.window_for(mode, start, end)
        due = rules.due_at(start_at, deadline, kind, timezone or None, window)
        if due > start_at:
            condition = and_(tz_col == timezone, mode_col == mode, start_col == start, end_col == end)
            whens.append((condition, literal(due)))
    if not whens:
        return literal(start_at)
    return case(*whens, else_=literal(start_at))
