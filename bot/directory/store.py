"""Storing people: batched upserts of validated :class:`~bot.directory.records.PersonRecord` objects.

:func:`import_people` is the one engine every directory source feeds (a file today; LDAP and Slack
later): it takes an iterable of validated people and, in one transaction, upserts them in batches
(``INSERT ... ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL alike), replaces their group
memberships, makes sure a ``group_`` row exists for every named group, and optionally deactivates the
people of the same source who were not in the batch. People are never deleted. Added, changed and
unchanged are told apart against the stored rows, loaded once, so re-importing the same data writes
nothing and reports everyone unchanged.

Errors: :class:`bot.directory.files.DirectoryFileError` from :func:`import_file` for an unusable file;
SQLAlchemy errors propagate, and the transaction is rolled back so a failed import changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Table, and_, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bot.directory.files import read_people
from bot.directory.records import ParsedPeople, PersonRecord
from bot.store import Store
from bot.tables import Group, Person, PersonGroup

BATCH_SIZE = 1000
ANALYZE_AFTER = 5000
PERSON = SQLModel.metadata.tables[Person.__tablename__]
PERSON_GROUP = SQLModel.metadata.tables[PersonGroup.__tablename__]
GROUP = SQLModel.metadata.tables[Group.__tablename__]
# The stored fields an import may change, in the order of the comparison tuples.
STORED_FIELDS = (
    "name",
    "email",
    "phone",
    "department",
    "site",
    "title",
    "manager",
    "timezone",
    "slack_user_id",
    "language",
    "active",
    "source",
)

_T = TypeVar("_T")


@dataclass(frozen=True)
class ImportResult:
    """What one import did. ``deactivation_skipped`` is set when deactivation was asked for but the
    import held nobody (deactivating every person over an empty or wholly invalid source is refused)."""

    added: int = 0
    changed: int = 0
    unchanged: int = 0
    deactivated: int = 0
    deactivation_skipped: bool = False

    @property
    def imported(self) -> int:
        return self.added + self.changed + self.unchanged


@dataclass(frozen=True)
class FileImport:
    """A file import: the rows read (with the rejected ones) and what was stored."""

    parsed: ParsedPeople
    result: ImportResult = field(default_factory=ImportResult)


def batched(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def import_file(
    store: Store,
    path: Path | str,
    *,
    default_region: str | None = None,
    deactivate_missing: bool = False,
    source: str = "file",
) -> FileImport:
    """Read, validate and store a directory file (the path of ``herald directory import``).

    Raise :class:`~bot.directory.files.DirectoryFileError` before touching the database when the file
    cannot be used. Rejected rows are skipped; with ``deactivate_missing`` the people whose rows were
    rejected keep their state (they are in the file, only their row is wrong).
    """
    parsed = read_people(path, default_region)
    result = import_people(
        store,
        parsed.people,
        source=source,
        deactivate_missing=deactivate_missing,
        keep=parsed.rejected_ids,
    )
    return FileImport(parsed, result)


def import_people(
    store: Store,
    people: Iterable[PersonRecord],
    *,
    source: str = "file",
    deactivate_missing: bool = False,
    keep: Collection[str] = (),
    now: float | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportResult:
    """Upsert ``people`` (ids unique; :func:`~bot.directory.records.validate_rows` checks) in one transaction.

    With ``deactivate_missing``, active people whose ``source`` is ``source`` and whose id is neither
    among ``people`` nor in ``keep`` are set inactive.
    """
    stamp = time.time() if now is None else now
    with store.begin() as connection:
        existing = _load_people(connection)
        added, changed, unchanged, seen = _upsert(connection, people, existing, source, stamp, batch_size)
        if added + changed >= ANALYZE_AFTER and connection.dialect.name == "postgresql":
            # Fresh statistics, so audience queries right after a bulk load get sane plans
            # (autovacuum's analyze may take a minute to notice).
            connection.execute(text(f"ANALYZE {PERSON.name}, {PERSON_GROUP.name}"))
        deactivated, skipped = 0, deactivate_missing and not seen
        if deactivate_missing and seen:
            missing = _missing(existing, source, seen, keep)
            deactivated = _deactivate(connection, missing, stamp, batch_size)
    return ImportResult(added, changed, unchanged, deactivated, skipped)


def _missing(
    existing: dict[str, tuple[object, ...]], source: str, seen: set[str], keep: Collection[str]
) -> list[str]:
    """The ids of active people from ``source`` neither seen in this import nor kept."""
    return [
        person_id
        for person_id, row in existing.items()
        if row[-1] == source and row[-2] and person_id not in seen and person_id not in keep
    ]


def _upsert(
    connection: Connection,
    people: Iterable[PersonRecord],
    existing: dict[str, tuple[object, ...]],
    source: str,
    stamp: float,
    batch_size: int,
) -> tuple[int, int, int, set[str]]:
    """Write the people who are new or changed, and their group memberships; ``(added, changed,
    unchanged, ids seen)``."""
    memberships = _load_memberships(connection)
    groups = _GroupNames(connection)
    writer = _Writer(connection, batch_size)
    added = changed = unchanged = 0
    seen: set[str] = set()
    for person in people:
        seen.add(person.id)
        row = _stored_tuple(person, source)
        names = groups.canonical(person.groups)
        old_row, old_names = existing.get(person.id), memberships.get(person.id, ())
        if old_row == row and sorted(old_names) == sorted(names):
            unchanged += 1
            continue
        if old_row is None:
            added += 1
        else:
            changed += 1
        writer.person(person.id, row, stamp)
        writer.memberships(person.id, old_names, names)
    writer.flush()
    groups.store(connection, batch_size)
    return added, changed, unchanged, seen


def _stored_tuple(person: PersonRecord, source: str) -> tuple[object, ...]:
    return (
        person.name,
        person.email,
        person.phone,
        person.department,
        person.site,
        person.title,
        person.manager,
        person.timezone,
        person.slack_user_id,
        person.language,
        person.active,
        source,
    )


def _load_people(connection: Connection) -> dict[str, tuple[object, ...]]:
    columns = [PERSON.c[name] for name in STORED_FIELDS]
    rows = connection.execute(select(PERSON.c.id, *columns))
    return {row[0]: tuple(row[1:]) for row in rows}


def _load_memberships(connection: Connection) -> dict[str, list[str]]:
    memberships: dict[str, list[str]] = {}
    for person_id, name in connection.execute(select(PERSON_GROUP.c.person_id, PERSON_GROUP.c.group_name)):
        memberships.setdefault(person_id, []).append(name)
    return memberships


class _GroupNames:
    """One spelling per group, whatever the case in the file: the stored one, else the first seen."""

    def __init__(self, connection: Connection) -> None:
        self._known = {name.lower(): name for name in connection.scalars(select(GROUP.c.name))}
        self._new: dict[str, str] = {}

    def canonical(self, names: Sequence[str]) -> tuple[str, ...]:
        result = []
        for name in names:
            key = name.lower()
            spelled = self._known.get(key) or self._new.setdefault(key, name)
            result.append(spelled)
        return tuple(result)

    def store(self, connection: Connection, batch_size: int) -> None:
        if not self._new:
            return
        rows = [{"name": name, "slack_usergroup_id": None, "description": ""} for name in self._new.values()]
        statement = _insert(connection, GROUP).on_conflict_do_nothing(index_elements=["name"])
        for batch in batched(rows, batch_size):
            connection.execute(statement, batch)


class _Writer:
    """Buffers person upserts and membership changes, writing them a batch at a time."""

    def __init__(self, connection: Connection, batch_size: int) -> None:
        self.connection = connection
        self.batch_size = batch_size
        self.people: list[dict[str, Any]] = []
        self.joined: list[dict[str, Any]] = []
        self.left: list[dict[str, Any]] = []
        statement = _insert(connection, PERSON)
        self.upsert = statement.on_conflict_do_update(
            index_elements=["id"],
            set_={name: statement.excluded[name] for name in (*STORED_FIELDS, "updated_at")},
        )
        self.join = _insert(connection, PERSON_GROUP)
        self.leave = PERSON_GROUP.delete().where(
            and_(
                PERSON_GROUP.c.person_id == bindparam("p"),
                PERSON_GROUP.c.group_name == bindparam("g"),
            )
        )

    def person(self, person_id: str, row: tuple[object, ...], stamp: float) -> None:
        self.people.append(
            {"id": person_id, **dict(zip(STORED_FIELDS, row, strict=True)), "updated_at": stamp}
        )
        if len(self.people) >= self.batch_size:
            self.flush()

    def memberships(self, person_id: str, old: Sequence[str], new: Sequence[str]) -> None:
        self.left.extend({"p": person_id, "g": name} for name in set(old) - set(new))
        self.joined.extend({"person_id": person_id, "group_name": name} for name in set(new) - set(old))

    def flush(self) -> None:
        # People first: person_group rows refer to them.
        if self.people:
            self.connection.execute(self.upsert, self.people)
            self.people = []
        if self.left:
            self.connection.execute(self.leave, self.left)
            self.left = []
        if self.joined:
            self.connection.execute(self.join, self.joined)
            self.joined = []


def _deactivate(connection: Connection, ids: Sequence[str], stamp: float, batch_size: int) -> int:
    for batch in batched(ids, batch_size):
        connection.execute(
            update(PERSON).where(PERSON.c.id.in_(batch)).values(active=False, updated_at=stamp)
        )
    return len(ids)


def _insert(connection: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which has ``on_conflict_do_update``/``on_conflict_do_nothing``."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
