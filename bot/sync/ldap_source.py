"""Reading people from LDAP or Active Directory: the searches, and entries mapped to rows. Blocking:
the runner calls it in a thread.

:func:`fetch_entries` connects and binds (:mod:`bot.sync.ldap_connection`) and reads, in pages:

1. people: ``user_filter`` under ``base_dn``, with the mapped attributes;
2. disabled accounts: ``(&user_filter disabled_filter)``, DNs only; they become inactive;
3. groups, when ``group_base_dn`` is set: ``group_filter`` under it, their ``cn`` and
   ``group_member_attribute`` (default ``member``).

Every search must end in success: a truncated directory would deactivate the people it left out.

Each person entry becomes one :class:`~bot.directory.records.RawRow` (``where`` is ``entry <DN>``) whose
values are Herald's fields, ready for :func:`bot.directory.records.validate_rows`:

- the attribute map (:data:`AD_ATTRIBUTES`, overridden per field by ``[directory.ldap.attributes]``)
  names, per field, LDAP attributes tried in order (``"mobile,telephoneNumber"``: the first one
  present wins; ``""`` leaves the field unmapped);
- ``manager``: a DN resolves to that person's id (their ``id`` attribute, else their e-mail); a
  manager who is not among the people read is left empty; a value that is not a DN is kept;
- ``groups``: DNs resolve to the group's CN; a group entry under ``group_base_dn`` whose member
  attribute lists the person's DN counts too, and so does every group that has such a group as a
  member (nested groups, however deep; cycles are harmless);
- ``active`` is false for entries the disabled filter matches.

DNs are compared in one spelling (:func:`bot.sync.ldap_dn.dn_key`).

Errors: :class:`~bot.sync.errors.SyncError` only (reasons ``config``, ``auth``, ``network``,
``source``); its message names the server and never a password.
"""

from __future__ import annotations

import contextlib
import gc
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from bot.config import LdapSettings
from bot.directory.records import FIELDS, RawRow, row_key
from bot.sync.errors import SyncError
from bot.sync.ldap_connection import Attributes, PagedSearch, close, connect, required_setting
from bot.sync.ldap_dn import dn_key, first_rdn_value, is_dn

# Herald field -> LDAP attributes tried in order; Active Directory's names.
AD_ATTRIBUTES: dict[str, str] = {
    "id": "sAMAccountName",
    "name": "displayName",
    "email": "mail",
    "phone": "mobile,telephoneNumber",
    "department": "department",
    "site": "physicalDeliveryOfficeName",
    "title": "title",
    "manager": "manager",
    "groups": "memberOf",
    "timezone": "",
    "slack_user_id": "",
    "language": "preferredLanguage",  # RFC 2798 (inetOrgPerson); AD has it too
}
_NO_ATTRIBUTES = ["1.1"]  # RFC 4511: return no attributes, only DNs


@dataclass(frozen=True)
class LdapEntries:
    """What one read of the directory found: a row per person entry, and counts for the summary."""

    rows: list[RawRow]
    requests: int = 0  # search requests made (pages), all searches together
    disabled: int = 0
    groups: int = 0


def attribute_map(overrides: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Herald field -> LDAP attribute names, the AD defaults overridden by ``overrides``.

    Raise :class:`SyncError` (``config``) naming the key when a field is not one of Herald's.
    """
    mappable = [name for name in FIELDS if name != "active"]
    merged = dict(AD_ATTRIBUTES)
    for name, value in overrides.items():
        key = name.strip().lower()
        if key not in AD_ATTRIBUTES:
            raise SyncError(
                f"directory.ldap.attributes.{name}: unknown field (expected one of {', '.join(mappable)})",
                "config",
            )
        merged[key] = value
    return {
        name: tuple(part.strip() for part in value.split(",") if part.strip())
        for name, value in merged.items()
    }


def fetch_entries(settings: LdapSettings) -> LdapEntries:
    """Read every person (and group) entry; raise :class:`SyncError` unless everything was read."""
    fields = attribute_map(settings.attributes)
    url = required_setting(settings.url, "url")
    base_dn = required_setting(settings.base_dn, "base_dn")
    with fewer_collections():
        connection = connect(settings)
        search = PagedSearch(connection, settings.page_size, url)
        try:
            people = _read_people(search, base_dn, settings.user_filter, fields)
            disabled = _read_disabled(search, base_dn, settings)
            groups = _read_groups(search, settings) if settings.group_base_dn else _Groups()
        finally:
            close(connection)
        rows = _rows(people, disabled, groups)
    return LdapEntries(
        rows,
        requests=search.requests,
        disabled=sum(1 for person in people if person.key in disabled),
        groups=len(groups.names),
    )


def _read_disabled(search: PagedSearch, base_dn: str, settings: LdapSettings) -> set[str]:
    """The DN keys of the people the disabled filter matches (none without one)."""
    if not settings.disabled_filter.strip():
        return set()
    both = f"(&{_wrapped(settings.user_filter)}{_wrapped(settings.disabled_filter)})"
    return {dn_key(dn) for dn, _ in search.entries("disabled accounts", base_dn, both, _NO_ATTRIBUTES)}


@dataclass(slots=True)
class _Person:
    dn: str
    key: str
    values: dict[str, object]
    manager: str | None
    groups: list[str]


def _read_people(
    search: PagedSearch, base_dn: str, user_filter: str, fields: Mapping[str, tuple[str, ...]]
) -> list[_Person]:
    requested = sorted({name for names in fields.values() for name in names}, key=str.lower)
    people: list[_Person] = []
    for dn, attributes in search.entries("people", base_dn, user_filter, requested or _NO_ATTRIBUTES):
        values: dict[str, object] = {}
        for name, sources in fields.items():
            if name in ("groups", "manager"):
                continue
            value = _first_value(attributes, sources)
            if value is not None:
                values[name] = value
        groups = [str(v) for source in fields["groups"] for v in attributes.get(source) or () if v]
        people.append(_Person(dn, dn_key(dn), values, _first_value(attributes, fields["manager"]), groups))
    return people


def _first_value(attributes: Attributes, sources: Iterable[str]) -> str | None:
    for source in sources:
        for value in attributes.get(source) or ():
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            if text.strip():
                return text
    return None


@dataclass
class _Groups:
    """Group entries: their names, and for each member DN (key) the groups that list it."""

    names: dict[str, str] = field(default_factory=dict)
    containing: dict[str, list[str]] = field(default_factory=dict)
    _ancestors: dict[str, frozenset[str]] = field(default_factory=dict)

    def ancestors(self, key: str) -> frozenset[str]:
        """The groups that contain group ``key``, directly or through other groups."""
        known = self._ancestors.get(key)
        if known is not None:
            return known
        found: set[str] = set()
        queue = deque(self.containing.get(key, ()))
        while queue:
            group = queue.popleft()
            if group not in found:
                found.add(group)
                queue.extend(self.containing.get(group, ()))
        found.discard(key)
        result = self._ancestors[key] = frozenset(found)
        return result


def _read_groups(search: PagedSearch, settings: LdapSettings) -> _Groups:
    base = settings.group_base_dn or ""
    member_attribute = settings.group_member_attribute
    groups = _Groups()
    for dn, attributes in search.entries("groups", base, settings.group_filter, ["cn", member_attribute]):
        key = dn_key(dn)
        groups.names[key] = _first_value(attributes, ["cn"]) or first_rdn_value(dn)
        for member in attributes.get(member_attribute) or ():
            groups.containing.setdefault(dn_key(str(member)), []).append(key)
    return groups


def _rows(people: list[_Person], disabled: set[str], groups: _Groups) -> list[RawRow]:
    ids = {person.key: row_key(person.values) for person in people}
    rows = []
    for person in people:
        values = person.values
        if person.manager is not None:
            manager = person.manager
            values["manager"] = ids.get(dn_key(manager)) if is_dn(manager) else manager
        values["groups"] = _group_names(person, groups)
        if person.key in disabled:
            values["active"] = False
        rows.append(RawRow(f"entry {person.dn}", values))
    return rows


def _group_names(person: _Person, groups: _Groups) -> list[str]:
    names: dict[str, str] = {}  # group key (or a literal name) -> name
    direct: list[str] = list(groups.containing.get(person.key, ()))
    for value in person.groups:
        if is_dn(value):
            key = dn_key(value)
            names[key] = groups.names.get(key) or first_rdn_value(value)
            direct.append(key)
        else:
            names[value.lower()] = value
    for key in direct:
        names.setdefault(key, groups.names.get(key, ""))
        for ancestor in groups.ancestors(key):
            names.setdefault(ancestor, groups.names.get(ancestor, ""))
    return sorted((name for name in names.values() if name), key=str.lower)


def _wrapped(search_filter: str) -> str:
    text = search_filter.strip()
    return text if text.startswith("(") else f"({text})"


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector's youngest generation less often meanwhile.

    A read keeps a few hundred thousand objects alive while ldap3 makes millions of short-lived
    ones; at the default threshold (700) the collector's passes took ~30% of a 50,000-entry read
    (bench/sync.py). The thresholds are process-wide: restored afterwards.
    """
    previous = gc.get_threshold()
    gc.set_threshold(max(previous[0], 50_000), *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
