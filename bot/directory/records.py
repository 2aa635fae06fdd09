"""Reading and validating directory files: pure, no database.

A directory file is CSV (a header row, then one person per row; ``groups`` separated by ``;``) or
JSON (a list of objects, or ``{"people": [...]}``; ``groups`` may be a list) with the columns in
:data:`FIELDS`. Each row is validated on its own by :func:`validate_row`; :func:`read_people`
reads a whole file and returns the valid people and one :class:`RowError` per problem.

Errors:

- :class:`DirectoryFileError` — the file as a whole cannot be used (missing, unreadable, empty,
  not UTF-8, not valid JSON, unknown columns, neither an ``id`` nor an ``email`` column). Nothing
  from it may be loaded.
- :class:`RowError` (data, not raised) — one row cannot be used; the row is skipped, the rest load.
  ``where`` is ``line N`` for CSV (the header is line 1; a quoted field spanning lines counts from
  the line the row starts on) and ``item N`` for JSON (N is the 0-based index in the list, as
  ``jq '.[N]'`` counts).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import phonenumbers
from email_validator import EmailNotValidError, validate_email

if TYPE_CHECKING:
    from _csv import Reader

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
    "active",
)
# The widths of the person table's columns (bot/tables.py): longer values are rejected here
# rather than failing the whole import on PostgreSQL.
MAX_LENGTH = {
    "id": 200,
    "name": 300,
    "email": 320,
    "department": 200,
    "site": 200,
    "title": 300,
    "manager": 320,
    "groups": 200,
}
TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on", ""})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "off"})
_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,30}")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_EMAIL = re.compile(rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?P<domain>[A-Za-z0-9.-]+)")


class DirectoryFileError(Exception):
    """The file as a whole cannot be imported; the message names the file and the reason."""


class InvalidField(ValueError):
    """One field of one row is invalid."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


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


@cache
def _time_zones() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def _text(values: Mapping[str, object], name: str) -> str | None:
    """The field as text with runs of white space made one space, or None when absent or blank."""
    value = values.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidField(name, f"expected text, got {type(value).__name__}")
    text = " ".join(str(value).split())
    if not text:
        return None
    limit = MAX_LENGTH.get(name)
    if limit is not None and len(text) > limit:
        raise InvalidField(name, f"longer than {limit} characters")
    return text


def parse_email(value: str) -> str:
    """Validate syntax only (no DNS) and return the normalised, lower-case address."""
    # Fast path for the common shape (an ASCII dot-atom local part at a domain already accepted):
    # email-validator accepts every such address unchanged but for the domain's normalisation, and
    # checking each domain once makes a 100,000-row import several times faster.
    match = _SIMPLE_EMAIL.fullmatch(value)
    if match and len(match["local"]) <= 64 and len(value) <= 254:
        domain = _normalised_domain(match["domain"])
        if domain is not None:
            return f"{match['local'].lower()}@{domain}"
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        reason = reason[:1].lower() + reason[1:]
        raise InvalidField("email", f"{value!r} is not a valid email address ({reason})") from exc
    return result.normalized.lower()


@lru_cache(maxsize=4096)
def _normalised_domain(domain: str) -> str | None:
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).domain.lower()
    except EmailNotValidError:
        return None


def parse_phone(value: str, default_region: str | None) -> str:
    """A phone number in E.164; national numbers are read in ``default_region``."""
    if default_region is None and not value.startswith("+"):
        raise InvalidField(
            "phone",
            f"{value!r} has no country code (+…) and directory.default_region is not set",
        )
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidField("phone", f"{value!r} is not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidField("phone", f"{value!r} is not a valid phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def parse_timezone(value: str) -> str:
    """The IANA name in its canonical spelling (``europe/berlin`` → ``Europe/Berlin``)."""
    name = _time_zones().get(value.lower())
    if name is None:
        raise InvalidField("timezone", f"{value!r} is not an IANA time zone (such as Europe/Berlin)")
    return name


def parse_active(value: object) -> bool:
    """true/false, 1/0, yes/no (any case); blank or absent is true."""
    if value is None or isinstance(value, bool):
        return value is not False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidField("active", f"{value!r} is not one of true/false, yes/no, 1/0")


def parse_groups(value: object) -> tuple[str, ...]:
    """Group names from ``a;b;c`` or a list; blanks dropped, duplicates (any case) dropped, order kept."""
    if value is None:
        return ()
    if isinstance(value, str):
        parts: Iterable[object] = value.split(";")
    elif isinstance(value, list):
        parts = value
    else:
        raise InvalidField("groups", f"expected text or a list, got {type(value).__name__}")
    names: dict[str, str] = {}
    for part in parts:
        if not isinstance(part, str):
            raise InvalidField("groups", f"expected group names as text, got {type(part).__name__}")
        name = part.strip()
        if len(name) > MAX_LENGTH["groups"]:
            raise InvalidField("groups", f"{name[:40]!r}… is longer than {MAX_LENGTH['groups']} characters")
        if name:
            names.setdefault(name.lower(), name)
    return tuple(names.values())


def parse_slack_user_id(value: str) -> str:
    slack_id = value.upper()
    if not _SLACK_USER_ID.fullmatch(slack_id):
        raise InvalidField("slack_user_id", f"{value!r} is not a Slack user id (such as U024BE7LH)")
    return slack_id


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


def validate_row(values: Mapping[str, object], default_region: str | None = None) -> PersonRecord:
    """One person from one row's fields (keys as in :data:`FIELDS`).

    Raise :class:`InvalidRow` listing every invalid field, so one pass reports all of a row's problems.
    """
    problems = _Problems()
    texts = {
        name: problems.check(partial(_text, values, name), None)
        for name in FIELDS
        if name not in ("groups", "active")
    }
    email = texts["email"]
    if email is not None:
        email = problems.check(partial(parse_email, email), None)
    person_id = texts["id"] or email
    if person_id is None and not any(p.field in ("id", "email") for p in problems.found):
        problems.found.append(InvalidField("id", "a row needs an id or an email"))
    phone, timezone, slack_id, manager = (
        texts["phone"],
        texts["timezone"],
        texts["slack_user_id"],
        texts["manager"],
    )
    record = PersonRecord(
        id=person_id or "",
        name=texts["name"] or "",
        email=email,
        phone=problems.check(partial(parse_phone, phone, default_region), None) if phone else None,
        department=texts["department"],
        site=texts["site"],
        title=texts["title"],
        manager=manager.lower() if manager and "@" in manager else manager,
        groups=problems.check(partial(parse_groups, values.get("groups")), ()),
        timezone=problems.check(partial(parse_timezone, timezone), None) if timezone else None,
        slack_user_id=problems.check(partial(parse_slack_user_id, slack_id), None) if slack_id else None,
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


# --- files -----------------------------------------------------------------------------------


def read_people(path: Path | str, default_region: str | None = None) -> ParsedPeople:
    """Read, parse and validate a CSV or JSON directory file (JSON when it ends in ``.json`` or
    starts with ``[`` or ``{``). Raise :class:`DirectoryFileError` when the file cannot be used."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DirectoryFileError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise DirectoryFileError(f"{name}: is a directory") from None
    except OSError as exc:
        raise DirectoryFileError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    return parse_people(data, name, default_region)


def parse_people(data: bytes, name: str, default_region: str | None = None) -> ParsedPeople:
    """:func:`read_people` for bytes already in hand; ``name`` labels messages."""
    text = decode(data, name)
    stripped = text.lstrip()
    if not stripped:
        raise DirectoryFileError(f"{name}: empty")
    is_json = name.lower().endswith(".json") or stripped[0] in "[{"
    parsed = validate_rows(json_rows(text, name) if is_json else csv_rows(text, name), default_region)
    if not parsed.people and not parsed.rejected:
        raise DirectoryFileError(f"{name}: no people" + ("" if is_json else " after the header"))
    return parsed


def decode(data: bytes, name: str) -> str:
    """UTF-8 text (a leading BOM is dropped); a bad byte is reported with its line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DirectoryFileError(
            f"{name}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from exc


def _check_columns(columns: Iterable[str], name: str) -> None:
    seen = set(columns)
    unknown = sorted(seen - set(FIELDS))
    if unknown:
        listed = ", ".join(repr(c) for c in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise DirectoryFileError(f"{name}: unknown column{plural} {listed} (expected {', '.join(FIELDS)})")
    if "id" not in seen and "email" not in seen:
        raise DirectoryFileError(f"{name}: needs an 'id' or an 'email' column")


def csv_rows(text: str, name: str) -> Iterator[RawRow]:
    """Rows of a CSV document whose header names the columns (any case, blanks around ignored).

    Header problems raise :class:`DirectoryFileError` at once, before the first row is read.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise DirectoryFileError(f"{name}: line 1: {exc}") from exc
    columns = [column.strip().lower() for column in header]
    duplicated = sorted({c for c in columns if c and columns.count(c) > 1})
    if duplicated:
        raise DirectoryFileError(f"{name}: column {duplicated[0]!r} appears more than once")
    _check_columns([c for c in columns if c], name)
    return _csv_records(reader, columns)


def _csv_records(reader: Reader, columns: list[str]) -> Iterator[RawRow]:
    line = reader.line_num
    while True:
        where = f"line {line + 1}"
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The rest of the file cannot be read reliably after a broken quote.
            yield RawRow(where, {}, f"unreadable CSV: {exc}")
            return
        line = reader.line_num
        if not any(value.strip() for value in record):
            continue
        values = {c: v for c, v in zip(columns, record, strict=False) if c}
        if len(record) > len(columns):
            yield RawRow(where, values, f"{len(record)} values but the header has {len(columns)} columns")
            continue
        yield RawRow(where, values)


def json_rows(text: str, name: str) -> Iterator[RawRow]:
    """Rows of a JSON list of objects (or ``{"people": [...]}``); keys are matched in any case."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DirectoryFileError(
            f"{name}: not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    items = document.get("people") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise DirectoryFileError(f'{name}: expected a list of people or {{"people": [...]}}')
    if not items:
        raise DirectoryFileError(f"{name}: no people")
    objects = [
        {str(key).strip().lower(): value for key, value in item.items()} if isinstance(item, dict) else None
        for item in items
    ]
    _check_columns({key for item in objects if item is not None for key in item}, name)
    return (
        RawRow(f"item {index}", item)
        if item is not None
        else RawRow(f"item {index}", {}, "expected an object")
        for index, item in enumerate(objects)
    )
