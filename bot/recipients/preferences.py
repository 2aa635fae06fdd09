"""A person's choices: which kinds reach them on which channel, and their quiet hours.

Reading (:func:`load`) never writes: the page behind a ``GET /u/{token}`` is safe to prefetch.
Writing (:func:`save`, :func:`unsubscribe_email`) takes effect before the next send to the person:

- new notifications read the ``preference`` table when their deliveries are created
  (:func:`bot.recipients.rules.opted_out`);
- deliveries already waiting (``queued`` or ``deferred``) are updated in the same transaction: the
  ones now opted out become ``suppressed`` / ``opted_out``, and quiet-hours deferrals are worked out
  again for the new window. A delivery already claimed (``sending``) is in a worker's hands and goes.

Mandatory kinds are never stored as off: :func:`wants` answers True for them whatever the rows say.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bot.engine import notice_state
from bot.recipients.quiet_hours import QuietWindow, parse_clock
from bot.recipients.rules import DeliveryRules
from bot.recipients.tables import ALL_KINDS, QUIET_MODES, PersonSettings, Preference
from bot.store import Store
from bot.tables import Delivery, Notification, Person, Suppression

PERSON = SQLModel.metadata.tables[Person.__tablename__]
PREFERENCE = SQLModel.metadata.tables[Preference.__tablename__]
PERSON_SETTINGS = SQLModel.metadata.tables[PersonSettings.__tablename__]
DELIVERY = SQLModel.metadata.tables[Delivery.__tablename__]
NOTIFICATION = SQLModel.metadata.tables[Notification.__tablename__]
SUPPRESSION = SQLModel.metadata.tables[Suppression.__tablename__]

WAITING = ("queued", "deferred")
Prefs = Mapping[tuple[str, str], bool]


@dataclass(frozen=True, slots=True)
class QuietChoice:
    """``mode`` is ``default`` (the company window), ``custom`` (``start`` to ``end``) or ``off``."""

    mode: str = "default"
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True, slots=True)
class Choices:
    """What a person chose on the page: the (kind, channel) pairs left on, and quiet hours."""

    enabled: frozenset[tuple[str, str]]
    quiet: QuietChoice = QuietChoice()


@dataclass(frozen=True)
class PreferencesView:
    """Everything the page shows for one person."""

    person_id: str
    name: str
    email: str | None
    phone: str | None
    timezone: str | None
    kinds: tuple[str, ...]
    mandatory: tuple[str, ...]
    channels: tuple[str, ...]
    enabled: Mapping[tuple[str, str], bool]
    quiet: QuietChoice
    company_window: QuietWindow | None
    quiet_kinds: tuple[str, ...]
    suppressed: Mapping[str, str] = field(default_factory=dict)  # channel -> why


def wants(prefs: Prefs, kind: str, channel: str, mandatory: Collection[str]) -> bool:
    """Does the person want ``kind`` on ``channel``? The rule :func:`rules.opted_out` applies in SQL."""
    if kind in mandatory:
        return True
    explicit = prefs.get((kind, channel))
    if explicit is not None:
        return explicit
    return prefs.get((ALL_KINDS, channel), True)


def parse_choices(
    pairs: Iterable[tuple[str, str]], kinds: Collection[str], channels: Collection[str]
) -> Choices:
    """The page's form (``pref`` = ``kind:channel`` per ticked box; ``quiet``, ``quiet_start``,
    ``quiet_end``) as :class:`Choices`; raises ValueError with a message for the person."""
    enabled: set[tuple[str, str]] = set()
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name == "pref":
            kind, _, channel = value.rpartition(":")
            if kind in kinds and channel in channels:
                enabled.add((kind, channel))
        else:
            fields[name] = value.strip()
    mode = fields.get("quiet", "default") or "default"
    if mode not in QUIET_MODES:
        raise ValueError("choose company quiet hours, your own, or none")
    if mode != "custom":
        return Choices(frozenset(enabled), QuietChoice(mode))
    try:
        start = parse_clock(fields.get("quiet_start", ""))
        end = parse_clock(fields.get("quiet_end", ""))
    except ValueError as exc:
        raise ValueError("your quiet hours need a start and an end time, such as 22:00 and 07:00") from exc
    if start == end:
        raise ValueError("your quiet hours start and end at the same time")
    return Choices(frozenset(enabled), QuietChoice("custom", f"{start:%H:%M}", f"{end:%H:%M}"))


def load(
    store: Store, rules: DeliveryRules, channels: Collection[str], person_id: str
) -> PreferencesView | None:
    """The page's facts for ``person_id``, or None when there is no such person. Reads only."""
    with store.begin() as connection:
        person = connection.execute(select(PERSON).where(PERSON.c.id == person_id)).first()
        if person is None:
            return None
        prefs = _prefs(connection, person_id)
        quiet = _quiet(connection, person_id)
        suppressed = _suppressed(connection, person.email, person.phone)
    kinds = rules.non_mandatory
    return PreferencesView(
        person_id=person_id,
        name=person.name or person_id,
        email=person.email,
        phone=person.phone,
        timezone=person.timezone,
        kinds=kinds,
        mandatory=tuple(sorted(rules.mandatory)),
        channels=tuple(channels),
        enabled={(k, c): wants(prefs, k, c, rules.mandatory) for k in kinds for c in channels},
        quiet=quiet,
        company_window=rules.quiet.window if rules.quiet else None,
        quiet_kinds=tuple(sorted(rules.quiet.kinds)) if rules.quiet else (),
        suppressed=suppressed,
    )


def save(
    store: Store,
    rules: DeliveryRules,
    channels: Collection[str],
    person_id: str,
    choices: Choices,
    now: float,
) -> int:
    """Store the page's choices and apply them to waiting deliveries; returns how many were suppressed."""
    kinds = rules.non_mandatory
    rows = [
        {
            "person_id": person_id,
            "kind": k,
            "channel": c,
            "enabled": (k, c) in choices.enabled,
            "updated_at": now,
        }
        for k in kinds
        for c in channels
    ]
    for channel in channels:
        if not any((k, channel) in choices.enabled for k in kinds):
            rows.append(
                {
                    "person_id": person_id,
                    "kind": ALL_KINDS,
                    "channel": channel,
                    "enabled": False,
                    "updated_at": now,
                }
            )
    with store.begin() as connection:
        connection.execute(
            delete(PREFERENCE).where(
                PREFERENCE.c.person_id == person_id, PREFERENCE.c.channel.in_(list(channels))
            )
        )
        if rows:
            connection.execute(insert(PREFERENCE), rows)
        connection.execute(delete(PERSON_SETTINGS).where(PERSON_SETTINGS.c.person_id == person_id))
        connection.execute(
            insert(PERSON_SETTINGS).values(
                person_id=person_id,
                quiet_mode=choices.quiet.mode,
                quiet_start=choices.quiet.start,
                quiet_end=choices.quiet.end,
                updated_at=now,
            )
        )
        suppressed, touched = _apply_to_waiting(connection, rules, person_id, now)
    notice_state.finish_notifications(store, now, touched)
    return suppressed


def unsubscribe_email(store: Store, rules: DeliveryRules, person_id: str, now: float) -> int:
    """RFC 8058 one-click: every non-mandatory kind off on email, now and for kinds added later."""
    keys = [*rules.non_mandatory, ALL_KINDS]
    with store.begin() as connection:
        connection.execute(
            delete(PREFERENCE).where(
                PREFERENCE.c.person_id == person_id,
                PREFERENCE.c.channel == "email",
                PREFERENCE.c.kind.in_(keys),
            )
        )
        connection.execute(
            insert(PREFERENCE),
            [
                {"person_id": person_id, "kind": k, "channel": "email", "enabled": False, "updated_at": now}
                for k in keys
            ],
        )
        suppressed, touched = _apply_to_waiting(connection, rules, person_id, now)
    notice_state.finish_notifications(store, now, touched)
    return suppressed


def _prefs(connection: Connection, person_id: str) -> dict[tuple[str, str], bool]:
    pref = PREFERENCE.c
    rows = connection.execute(
        select(pref.kind, pref.channel, pref.enabled).where(pref.person_id == person_id)
    ).all()
    return {(kind, channel): bool(enabled) for kind, channel, enabled in rows}


def _quiet(connection: Connection, person_id: str) -> QuietChoice:
    row = connection.execute(
        select(
            PERSON_SETTINGS.c.quiet_mode, PERSON_SETTINGS.c.quiet_start, PERSON_SETTINGS.c.quiet_end
        ).where(PERSON_SETTINGS.c.person_id == person_id)
    ).first()
    return QuietChoice(*row) if row is not None else QuietChoice()


def _suppressed(connection: Connection, email: str | None, phone: str | None) -> dict[str, str]:
    """Channel -> the suppression's source (``sms-stop``, ``delivery``...) for the person's addresses."""
    found: dict[str, str] = {}
    for channel, address in (("email", email), ("sms", phone)):
        if not address:
            continue
        row = connection.execute(
            select(SUPPRESSION.c.reason, SUPPRESSION.c.source).where(
                SUPPRESSION.c.channel == channel, SUPPRESSION.c.address == address
            )
        ).first()
        if row is not None:
            found[channel] = row.source or row.reason
    return found


def _apply_to_waiting(
    connection: Connection, rules: DeliveryRules, person_id: str, now: float
) -> tuple[int, set[str]]:
    """Suppress waiting deliveries the person no longer wants; re-time their quiet-hours deferrals."""
    prefs = _prefs(connection, person_id)
    quiet = _quiet(connection, person_id)
    timezone = connection.execute(select(PERSON.c.timezone).where(PERSON.c.id == person_id)).scalar()
    window = rules.window_for(quiet.mode, quiet.start, quiet.end)
    d, n = DELIVERY.c, NOTIFICATION.c
    waiting = connection.execute(
        select(d.id, d.notification_id, d.channel, d.state, d.reason, d.deadline, n.severity)
        .join_from(DELIVERY, NOTIFICATION, n.id == d.notification_id)
        .where(d.person_id == person_id, d.state.in_(WAITING))
    ).all()
    unwanted = [row for row in waiting if not wants(prefs, row.severity, row.channel, rules.mandatory)]
    if unwanted:
        connection.execute(
            update(DELIVERY)
            .where(d.id.in_([row.id for row in unwanted]), d.state.in_(WAITING))
            .values(state="suppressed", reason="opted_out", updated_at=now)
        )
    for row in waiting:
        if row in unwanted or row.reason != "quiet_hours":
            continue
        due = rules.due_at(now, row.deadline, row.severity, timezone, window)
        connection.execute(
            update(DELIVERY)
            .where(d.id == row.id, d.state == "deferred")
            .values(
                due_at=due,
                state="deferred" if due > now else "queued",
                reason="quiet_hours" if due > now else None,
            )
        )
    return len(unwanted), {row.notification_id for row in unwanted}
