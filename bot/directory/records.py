"""Directory rows and their validation: pure, no database.

A row is one person's fields by name (:data:`FIELDS`), as read from a file
(:mod:`bot.directory.files`) or a sync source (:mod:`bot.sync`). :func:`validate_row` turns one row
into a :class:`PersonRecord`, each field parsed by :mod:`bot.directory.fields`, or raises
:class:`InvalidRow` listing every invalid field; :func:`validate_rows` validates a whole source,
skipping bad rows and duplicates, and returns the people and one :class:`RowError` per problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from bot.directory.fields import (
    InvalidField,
    parse_active,
    parse_email,
    parse_groups,
    parse_language,
    parse_phone,
    parse_slack_user_id,
    parse_timezone,
    text_field,
)

_T = TypeVar("_T")

FIELDS = (
    "id",
    "name",
    "email",
    "phone",
    "department",
    "site",
    "title",
    "manager",
    "groups",
    "timezone",
    "slack_user_id",
    "language",
    "active",
)


class InvalidRow(ValueError):
    """A row has one or more invalid fields; ``problems`` lists them in column order."""

    def __init__(self, problems: list[InvalidField]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """One validated person, ready to store. ``email`` is normalised and lower-case, ``phone`` E.164."""

    id: str
    name: str = ""
    email: str | None = None
    phone: str | None = None
    department: str | None = None
    site: str | None = None
    title: str | None = None
    manager: str | None = None
    groups: tuple[str, ...] = ()
    timezone: str | None = None
    slack_user_id: str | None = None
    language: str | None = None
    active: bool = True


@dataclass(frozen=True)
class RowError:
    """Why one row was skipped: ``where`` is ``line 7`` or ``item 3``; ``field`` is None for the whole row."""

    where: str
    field: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.field}: {self.reason}" if self.field else f"{self.where}: {self.reason}"


@dataclass(frozen=True)
class RawRow:
    """One row as read from the file, before validation."""

    where: str
    values: Mapping[str, object]
    problem: str | None = None


@dataclass
class ParsedPeople:
    """The outcome of reading one file.

    ``rejected`` counts skipped rows (a row may have several errors); ``rejected_ids`` holds the ids
    (or lower-cased emails) of skipped rows where one could be read, so that deactivating people
    missing from the file spares people whose row was merely invalid.
    """

    people: list[PersonRecord] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rejected: int = 0
    rejected_ids: set[str] = field(default_factory=set)

    def reject(self, row: RawRow, errors: list[RowError]) -> None:
        self.rejected += 1
        self.errors.extend(errors)
        key = row_key(row.values)
        if key is not None:
            self.rejected_ids.add(key)


def row_key(values: Mapping[str, object]) -> str | None:
    """The id a row would be stored under (its id, else its lower-cased email), read leniently."""
    for name in ("id", "email"):
        value = values.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            text = str(value).strip()
            return text if name == "id" else text.lower()
    return None


class _Problems:
    """Collects a row's invalid fields so one pass reports them all."""

    def __init__(self) -> None:
        self.found: list[InvalidField] = []

    def check(self, parse: Callable[[], _T], fallback: _T) -> _T:
        try:
            return parse()
        except InvalidField as exc:
            self.found.append(exc)
            return fallback

    def texts(self, values: Mapping[str, object]) -> dict[str, str | None]:
        """Every text field (all but groups and active) by :func:`~bot.directory.fields.text_field`."""
        return {
            name: self.check(partial(text_field, values, name), None)
            for name in FIELDS
            if name not in ("groups", "active")
        }

    def optional(self, parse: Callable[[str], _T], value: str | None) -> _T | None:
        """``parse(value)`` for a present value; None for an absent one, or an invalid one (noted)."""
        return None if value is None else self.check(partial(parse, value), None)


def validate_row(values: Mapping[str, object], default_region: str | None = None) -> PersonRecord:
    """One person from one row's fields (keys as in :data:`FIELDS`).

    Raise :class:`InvalidRow` listing every invalid field, so one pass reports all of a row's problems.
    """
    problems = _Problems()
    texts = problems.texts(values)
    email = problems.optional(parse_email, texts["email"])
    person_id = texts["id"] or email
    if person_id is None and not any(p.field in ("id", "email") for p in problems.found):
        problems.found.append(InvalidField("id", "a row needs an id or an email"))
    manager = texts["manager"]
    record = PersonRecord(
        id=person_id or "",
        name=texts["name"] or "",
        email=email,
        phone=problems.optional(partial(parse_phone, default_region=default_region), texts["phone"]),
        department=texts["department"],
        site=texts["site"],
        title=texts["title"],
        manager=manager.lower() if manager and "@" in manager else manager,
        groups=problems.check(partial(parse_groups, values.get("groups")), ()),
        timezone=problems.optional(parse_timezone, texts["timezone"]),
        slack_user_id=problems.optional(parse_slack_user_id, texts["slack_user_id"]),
        language=problems.optional(parse_language, texts["language"]),
        active=problems.check(partial(parse_active, values.get("active")), True),
    )
    if problems.found:
        raise InvalidRow(problems.found)
    return record


def validate_rows(rows: Iterable[RawRow], default_region: str | None = None) -> ParsedPeople:
    """Validate every row; a later duplicate of an id or an email is rejected naming the first row."""
    parsed = ParsedPeople()
    seen_ids: dict[str, str] = {}
    seen_emails: dict[str, str] = {}
    for row in rows:
        if row.problem is not None:
            parsed.reject(row, [RowError(row.where, None, row.problem)])
            continue
        try:
            person = validate_row(row.values, default_region)
        except InvalidRow as exc:
            parsed.reject(row, [RowError(row.where, p.field, p.reason) for p in exc.problems])
            continue
        if person.id in seen_ids:
            error = RowError(row.where, "id", f"{person.id!r} already appears on {seen_ids[person.id]}")
            parsed.reject(row, [error])
            continue
        if person.email is not None and person.email in seen_emails:
            where = seen_emails[person.email]
            parsed.reject(row, [RowError(row.where, "email", f"{person.email!r} already appears on {where}")])
            continue
        seen_ids[person.id] = row.where
        if person.email is not None:
            seen_emails[person.email] = row.where
        parsed.people.append(person)
    return parsed
