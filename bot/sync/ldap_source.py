"""Reading people from LDAP or Active Directory with ldap3. Blocking: the runner calls it in a thread.

:func:`fetch_entries` connects (``ldaps://``, or ``ldap://`` with StartTLS when ``start_tls`` is set;
certificates are verified against the system's CAs, ``SSL_CERT_FILE`` names another bundle), binds
(simple bind as ``bind_dn``, anonymous without one) and reads, in pages of ``page_size`` (Active
Directory answers at most 1,000 entries per page):

1. people: ``user_filter`` under ``base_dn``, with the mapped attributes;
2. disabled accounts: ``(&user_filter disabled_filter)``, DNs only; they become inactive;
3. groups, when ``group_base_dn`` is set: ``group_filter`` under it, their ``cn`` and
   ``group_member_attribute`` (default ``member``).

Every search must end in success. A search the server stops early (a size or time limit) raises,
as does a connection that drops between pages: a truncated directory would deactivate the people
it left out.

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

Errors: :class:`~bot.sync.errors.SyncError` only (reasons ``config``, ``auth``, ``network``,
``source``); its message names the server and never a password.
"""

from __future__ import annotations

import contextlib
import gc
import re
import ssl
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

with warnings.catch_warnings():
    # ldap3 2.9.1 imports names pyasn1 >= 0.6.2 marks deprecated; the warning is about ldap3's code.
    warnings.simplefilter("ignore", DeprecationWarning)
    from ldap3 import ANONYMOUS, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
    from ldap3.core.exceptions import (
        LDAPBindError,
        LDAPCertificateError,
        LDAPCommunicationError,
        LDAPException,
        LDAPInvalidCredentialsResult,
        LDAPInvalidFilterError,
        LDAPOperationResult,
        LDAPStartTLSError,
    )

from bot.config import LdapSettings
from bot.directory.records import FIELDS, RawRow, row_key
from bot.sync.errors import SyncError

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
}
CONNECT_TIMEOUT = 10
RECEIVE_TIMEOUT = 60  # ldap3 needs an int (it packs it into SO_RCVTIMEO)
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
_NO_ATTRIBUTES = ["1.1"]  # RFC 4511: return no attributes, only DNs
_TUPLE_TEXT = re.compile(r"""\((['"])(.*)\1,\)""", re.DOTALL)
_LOOSE_SEPARATOR = re.compile(r"\s[,=+]|[,=+]\s|^\s|\s$")

Attributes = Mapping[str, list[Any]]


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
    url = _required(settings.url, "url")
    base_dn = _required(settings.base_dn, "base_dn")
    with fewer_collections():
        connection = connect(settings)
        search = _PagedSearch(connection, settings.page_size, url)
        try:
            people = _read_people(search, base_dn, settings.user_filter, fields)
            disabled: set[str] = set()
            if settings.disabled_filter.strip():
                both = f"(&{_wrapped(settings.user_filter)}{_wrapped(settings.disabled_filter)})"
                found = search.entries("disabled accounts", base_dn, both, _NO_ATTRIBUTES)
                disabled = {dn_key(dn) for dn, _ in found}
            groups = _Groups()
            if settings.group_base_dn:
                groups = _read_groups(search, settings)
        finally:
            _close(connection)
        rows = _rows(people, disabled, groups)
    return LdapEntries(
        rows,
        requests=search.requests,
        disabled=sum(1 for person in people if person.key in disabled),
        groups=len(groups.names),
    )


def connect(settings: LdapSettings) -> Connection:
    """An open, bound, read-only connection; :class:`SyncError` when connecting or binding fails."""
    url = _required(settings.url, "url")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("ldap", "ldaps"):
        raise SyncError("directory.ldap.url: expected ldap://HOST[:PORT] or ldaps://HOST[:PORT]", "config")
    password = settings.bind_password.get_secret_value() if settings.bind_password else None
    if settings.bind_dn and not password:
        raise SyncError("directory.ldap.bind_password: missing (required with bind_dn)", "config")
    try:
        server = Server(
            url,
            use_ssl=scheme == "ldaps",
            tls=Tls(validate=ssl.CERT_REQUIRED),
            get_info=NONE,
            connect_timeout=CONNECT_TIMEOUT,
        )
        connection = Connection(
            server,
            user=settings.bind_dn,
            password=password,
            authentication=SIMPLE if settings.bind_dn else ANONYMOUS,
            read_only=True,
            raise_exceptions=True,
            auto_referrals=False,
            receive_timeout=RECEIVE_TIMEOUT,
        )
    except LDAPException as exc:
        raise SyncError(f"directory.ldap.url: {_first_line(exc)}", "config") from exc
    try:
        connection.open()
        if settings.start_tls and scheme == "ldap":
            connection.start_tls()
        connection.bind()
    except (LDAPInvalidCredentialsResult, LDAPBindError) as exc:
        _close(connection)
        who = f"as {settings.bind_dn!r}" if settings.bind_dn else "anonymously"
        raise SyncError(f"{url}: bind {who} refused: {_reason(exc)}", "auth") from exc
    except (LDAPStartTLSError, LDAPCertificateError, ssl.SSLError) as exc:
        _close(connection)
        raise SyncError(f"{url}: TLS failed: {_first_line(exc)}", "network") from exc
    except (LDAPCommunicationError, OSError) as exc:
        _close(connection)
        raise SyncError(f"{url}: cannot connect: {_first_line(exc)}", "network") from exc
    except LDAPException as exc:
        _close(connection)
        raise SyncError(f"{url}: bind failed: {_reason(exc)}", "source") from exc
    return connection


class _PagedSearch:
    """Paged subtree searches over one connection; counts requests; turns ldap3 errors into SyncError."""

    def __init__(self, connection: Connection, page_size: int, url: str) -> None:
        self.connection = connection
        self.page_size = page_size
        self.url = url
        self.requests = 0

    def entries(
        self, what: str, base: str, search_filter: str, attributes: list[str]
    ) -> Iterator[tuple[str, Attributes]]:
        """``(dn, attributes)`` of every entry, a page at a time; referrals are skipped."""
        cookie: bytes | None = None
        where = f"{self.url}: search of {what} under {base!r}"
        while True:
            try:
                self.connection.search(
                    base,
                    search_filter,
                    SUBTREE,
                    attributes=attributes,
                    paged_size=self.page_size,
                    paged_cookie=cookie,
                )
            except LDAPInvalidFilterError as exc:
                raise SyncError(f"{where}: invalid filter {search_filter!r}: {exc}", "config") from exc
            except (LDAPCommunicationError, OSError) as exc:
                raise SyncError(f"{where}: connection lost: {_first_line(exc)}", "network") from exc
            except LDAPException as exc:
                raise SyncError(f"{where} failed: {_reason(exc)}", "source") from exc
            self.requests += 1
            result = self.connection.result
            if result.get("result") != 0:
                # ldap3 does not raise for sizeLimitExceeded and timeLimitExceeded.
                raise SyncError(f"{where} stopped early: {result.get('description')}", "source")
            for item in self.connection.response or ():
                if item.get("type") == "searchResEntry":
                    yield item["dn"], item["attributes"]
            control = (result.get("controls") or {}).get(PAGED_RESULTS_OID) or {}
            cookie = (control.get("value") or {}).get("cookie") or None
            if not cookie:
                return


@dataclass(slots=True)
class _Person:
    dn: str
    key: str
    values: dict[str, object]
    manager: str | None
    groups: list[str]


def _read_people(
    search: _PagedSearch, base_dn: str, user_filter: str, fields: Mapping[str, tuple[str, ...]]
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


def _read_groups(search: _PagedSearch, settings: LdapSettings) -> _Groups:
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
            values["manager"] = ids.get(dn_key(manager)) if _is_dn(manager) else manager
        values["groups"] = _group_names(person, groups)
        if person.key in disabled:
            values["active"] = False
        rows.append(RawRow(f"entry {person.dn}", values))
    return rows


def _group_names(person: _Person, groups: _Groups) -> list[str]:
    names: dict[str, str] = {}  # group key (or a literal name) -> name
    direct: list[str] = list(groups.containing.get(person.key, ()))
    for value in person.groups:
        if _is_dn(value):
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


# --- distinguished names -----------------------------------------------------------------------


def _is_dn(value: str) -> bool:
    return "=" in value and "@" not in value.split("=", 1)[0]


def dn_key(dn: str) -> str:
    """A DN in one spelling for comparisons: attribute names and values lower-case, no spaces around
    separators, escapes undone (``CN=Doe\\, Jo , DC=x`` and ``cn=doe\\2c jo,dc=x`` give one key)."""
    if "\\" not in dn and '"' not in dn:
        if not _LOOSE_SEPARATOR.search(dn):
            return dn.lower()  # the usual spelling, and most of a sync's DNs: no work beyond this
        parts = (part.partition("=") for part in dn.split(","))
        return ",".join(f"{name.strip().lower()}={value.strip().lower()}" for name, _, value in parts)
    return ",".join(f"{name.lower()}={value.lower()}" for name, value in split_dn(dn))


def first_rdn_value(dn: str) -> str:
    """The value of a DN's first component: ``CN=Network Ops,OU=Groups,...`` gives ``Network Ops``."""
    parts = split_dn(dn) if "=" in dn else []
    return parts[0][1] if parts else dn


def split_dn(dn: str) -> list[tuple[str, str]]:
    """``(attribute, value)`` per RDN (the first of a multi-valued RDN), escapes undone (RFC 4514)."""
    result: list[tuple[str, str]] = []
    name: list[str] = []
    value = bytearray()
    in_value = skip = False
    i = 0
    while i < len(dn):
        char = dn[i]
        if char == "\\" and i + 1 < len(dn):
            pair = dn[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                escaped, i = bytes.fromhex(pair), i + 3
            else:
                escaped, i = dn[i + 1].encode(), i + 2
            if in_value and not skip:
                value += escaped
            continue
        i += 1
        if char == ",":
            result.append(("".join(name).strip(), value.decode("utf-8", "replace").strip()))
            name, value, in_value, skip = [], bytearray(), False, False
        elif char == "+":
            skip = True
        elif char == "=" and not in_value:
            in_value = True
        elif skip:
            continue
        elif in_value:
            value += char.encode()
        else:
            name.append(char)
    if name or value:
        result.append(("".join(name).strip(), value.decode("utf-8", "replace").strip()))
    return result


# --- small helpers ---------------------------------------------------------------------------------


def _required(value: str | None, key: str) -> str:
    if not value or not value.strip():
        raise SyncError(
            f"directory.ldap.{key} is not set (required with directory.source = 'ldap')", "config"
        )
    return value.strip()


def _wrapped(search_filter: str) -> str:
    text = search_filter.strip()
    return text if text.startswith("(") else f"({text})"


def _reason(exc: LDAPException) -> str:
    if isinstance(exc, LDAPOperationResult):
        message = (exc.message or "").strip()
        return f"{exc.description}" + (f" ({message})" if message else "")
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # ldap3 wraps messages in the repr of a one-element tuple, sometimes twice: ('...',)
    while match := _TUPLE_TEXT.fullmatch(text):
        text = match.group(2)
    return text.splitlines()[0] if text else type(exc).__name__


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


def _close(connection: Connection) -> None:
    with contextlib.suppress(LDAPException, OSError):
        connection.unbind()
    # ldap3 leaves the socket open when connecting fails or the connection dropped.
    sock = getattr(connection, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
