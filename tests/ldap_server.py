"""A real OpenLDAP server (Debian's ``slapd``) on 127.0.0.1 for the sync tests and the benchmark.

:class:`LdapServer` writes a ``slapd.conf`` (an MDB database in a temporary folder, the standard
core/cosine/inetOrgPerson schemas plus :data:`AD_SCHEMA`, a few Active Directory attribute types and
classes with AD's own OIDs), loads the base entries with ``slapadd`` and starts
``slapd -d 0 -h ldap://127.0.0.1:PORT/`` in the foreground.

With :data:`AD_SCHEMA`, Herald's Active Directory defaults work unchanged: ``user_filter``
``(&(objectCategory=person)(objectClass=user))``, ``disabled_filter`` with the ACCOUNTDISABLE bit of
``userAccountControl`` (OpenLDAP's ``integerBitAndMatch`` has AD's OID 1.2.840.113556.1.4.803),
``group_filter`` ``(objectClass=group)``, and the attribute map. Entries also carry the standard
attributes (``uid``, ``cn``, ``departmentNumber``, ``l``, ``employeeType: disabled``), so a test can
map those instead.

Accounts: :data:`ADMIN_DN` (the rootdn, writes), :data:`SERVICE_DN` (reads, with AD's limits: at most
1,000 entries per search and per page, unlimited in total when paged) and :data:`LIMITED_DN` (reads,
but a paged search stops after 150 entries with ``sizeLimitExceeded``).

:func:`directory` builds the test directory (people with AD-like attributes, disabled accounts,
people without mail or mobile, nested groups) under a fresh ``ou``; :class:`CuttingProxy` forwards
a TCP connection to the server and drops it after a number of bytes, as a server dying mid-search.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from ldap3 import NONE, Connection, Server
from server_process import free_port, start_listening, stop_process

SUFFIX = "dc=example,dc=com"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
SERVICE_DN = f"cn=herald,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "herald-secret"
LIMITED_DN = f"cn=limited,ou=services,{SUFFIX}"

AD_SCHEMA = """\
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.2.102 NAME 'memberOf'
  EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.2.141 NAME 'department'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.782 NAME 'objectCategory'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.2.840.113556.1.5.9 NAME 'user' AUXILIARY
  MAY ( sAMAccountName $ memberOf $ userAccountControl $ department $ objectCategory ) )
objectclass ( 1.2.840.113556.1.5.8 NAME 'group' AUXILIARY
  MAY ( sAMAccountName $ memberOf $ objectCategory ) )
"""

SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {folder}/ad.schema
{tls}pidfile {folder}/slapd.pid
argsfile {folder}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
sizelimit 500
database mdb
maxsize 4294967296
suffix "{suffix}"
rootdn "{admin_dn}"
rootpw {admin_password}
directory {folder}/data
index objectClass eq
index member eq
limits dn.exact="{limited_dn}" size.soft=1000 size.hard=1000 size.pr=1000 size.prtotal=150
limits users size.soft=1000 size.hard=1000 size.pr=1000 size.prtotal=unlimited
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
"""


def ldif(entries: Iterable[tuple[str, dict[str, Any]]]) -> str:
    """LDIF text for ``(dn, attributes)`` pairs (values plain ASCII or UTF-8, no line folding)."""
    blocks = []
    for dn, attributes in entries:
        lines = [f"dn: {dn}"]
        for name, value in attributes.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"{name}: {item}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def base_entries() -> list[tuple[str, dict[str, Any]]]:
    return [
        (SUFFIX, {"objectClass": ["dcObject", "organization"], "o": "Example", "dc": "example"}),
        (f"ou=services,{SUFFIX}", {"objectClass": "organizationalUnit", "ou": "services"}),
        (
            SERVICE_DN,
            {"objectClass": "person", "cn": "herald", "sn": "herald", "userPassword": SERVICE_PASSWORD},
        ),
        (
            LIMITED_DN,
            {"objectClass": "person", "cn": "limited", "sn": "limited", "userPassword": SERVICE_PASSWORD},
        ),
    ]


class LdapServer:
    """slapd on 127.0.0.1; ``start()`` after ``slapadd`` of the base entries (and any ``extra``)."""

    def __init__(
        self,
        folder: Path,
        slapd: str = "/usr/sbin/slapd",
        slapadd: str = "/usr/sbin/slapadd",
        openssl: str | None = None,
    ) -> None:
        self.folder = folder
        self.slapd, self.slapadd = slapd, slapadd
        self.openssl = openssl  # given: TLS on, StartTLS on url and ldaps:// on ldaps_url
        self.ca_file = folder / "ca.crt"
        self.port = 0
        self.url = ""
        self.ldaps_url = ""
        self.process: subprocess.Popen[bytes] | None = None

    def configure(self, extra: Iterable[tuple[str, dict[str, Any]]] = ()) -> None:
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        (self.folder / "ad.schema").write_text(AD_SCHEMA)
        tls = ""
        if self.openssl:
            make_certificates(self.openssl, self.folder)
            tls = "".join(
                f"{key} {self.folder / name}\n"
                for key, name in (
                    ("TLSCACertificateFile", "ca.crt"),
                    ("TLSCertificateFile", "server.crt"),
                    ("TLSCertificateKeyFile", "server.key"),
                )
            )
        conf = SLAPD_CONF.format(
            tls=tls,
            folder=self.folder,
            suffix=SUFFIX,
            admin_dn=ADMIN_DN,
            admin_password=ADMIN_PASSWORD,
            limited_dn=LIMITED_DN,
        )
        (self.folder / "slapd.conf").write_text(conf)
        data = self.folder / "base.ldif"
        with data.open("w", encoding="utf-8") as handle:
            handle.write(ldif(base_entries()))
            for dn, attributes in extra:
                handle.write("\n" + ldif([(dn, attributes)]))
        subprocess.run(
            [self.slapadd, "-q", "-f", str(self.folder / "slapd.conf"), "-l", str(data)],
            check=True,
            capture_output=True,
        )
        data.unlink()

    def start(self, timeout: float = 15.0) -> str:
        """Start slapd; return its URL once it accepts connections."""
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        listen = f"{self.url}/"
        if self.openssl:
            self.ldaps_url = f"ldaps://127.0.0.1:{free_port()}"
            listen += f" {self.ldaps_url}/"
        argv = [self.slapd, "-f", str(self.folder / "slapd.conf"), "-h", listen, "-d", "0"]
        self.process = start_listening(argv, self.folder / "slapd.log", self.port, timeout, self._log_tail)
        return self.url

    def _log_tail(self) -> str:
        return (self.folder / "slapd.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    @contextlib.contextmanager
    def admin(self) -> Iterator[Connection]:
        """A connection bound as the rootdn, for changing entries."""
        connection = Connection(
            Server(self.url, get_info=NONE), ADMIN_DN, ADMIN_PASSWORD, auto_bind=True, raise_exceptions=True
        )
        try:
            yield connection
        finally:
            connection.unbind()

    def add(self, entries: Iterable[tuple[str, dict[str, Any]]]) -> None:
        with self.admin() as connection:
            for dn, attributes in entries:
                object_class = attributes["objectClass"]
                rest = {k: v for k, v in attributes.items() if k != "objectClass"}
                connection.add(dn, object_class, rest)


def make_certificates(openssl: str, folder: Path) -> None:
    """A throwaway CA (``ca.crt``) and a server certificate for 127.0.0.1 signed by it."""

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)

    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=Herald test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
    )  # fmt: skip
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    run(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
    )  # fmt: skip


# --- the test directory ----------------------------------------------------------------------------

DEPARTMENTS = ("Finance", "IT", "Sales", "HR")
SITES = ("Berlin", "London", "New York")


@dataclass
class Directory:
    """The entries of one test directory under ``base_dn``, and facts the tests check against."""

    base_dn: str
    people_dn: str
    groups_dn: str
    entries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    disabled: set[str] = field(default_factory=set)

    def person_dn(self, uid: str) -> str:
        return f"uid={uid},{self.people_dn}"

    def group_dn(self, name: str) -> str:
        return f"cn={name},{self.groups_dn}"


def uid(i: int) -> str:
    return f"u{i:03d}"


# Group -> (people by number, member groups). Nested: oncall-network and oncall-db are in oncall,
# oncall is in it-staff; loop-a and loop-b contain each other.
GROUPS: dict[str, tuple[range | list[int], list[str]]] = {
    "oncall-network": (range(1, 11), []),
    "oncall-db": (range(11, 16), []),
    "oncall": ([20], ["oncall-network", "oncall-db"]),
    "it-staff": ([30], ["oncall"]),
    "loop-a": ([40], ["loop-b"]),
    "loop-b": ([41], ["loop-a"]),
}


def directory(base_dn: str, people: int = 240) -> Directory:
    """People ``u000``..: every 40th (from 7) disabled; every 25th (from 3) without mail; every 10th
    (from 5) with only ``telephoneNumber``, every 30th (from 9) with no phone at all; everyone's
    manager is ``u000`` (``u000`` has none); ``memberOf`` lists direct groups, as in AD."""
    found = Directory(base_dn, f"ou=people,{base_dn}", f"ou=groups,{base_dn}")
    ou = base_dn.split(",", 1)[0].split("=", 1)[1]
    found.entries.append((base_dn, {"objectClass": "organizationalUnit", "ou": ou}))
    found.entries.append((found.people_dn, {"objectClass": "organizationalUnit", "ou": "people"}))
    found.entries.append((found.groups_dn, {"objectClass": "organizationalUnit", "ou": "groups"}))
    direct: dict[str, list[str]] = {}
    for name, (members, subgroups) in GROUPS.items():
        for number in members:
            direct.setdefault(found.person_dn(uid(number)), []).append(found.group_dn(name))
        for subgroup in subgroups:
            direct.setdefault(found.group_dn(subgroup), []).append(found.group_dn(name))
    for i in range(people):
        found.entries.append(person_entry(found, i, direct.get(found.person_dn(uid(i)), [])))
        if i % 40 == 7:
            found.disabled.add(uid(i))
    for name, (members, subgroups) in GROUPS.items():
        dn = found.group_dn(name)
        attributes: dict[str, Any] = {
            "objectClass": ["groupOfNames", "group"],
            "cn": name,
            "member": [found.person_dn(uid(n)) for n in members] + [found.group_dn(g) for g in subgroups],
        }
        if direct.get(dn):
            attributes["memberOf"] = direct[dn]
        found.entries.append((dn, attributes))
    return found


def person_entry(found: Directory, i: int, groups: list[str]) -> tuple[str, dict[str, Any]]:
    name = uid(i)
    disabled = i % 40 == 7
    attributes: dict[str, Any] = {
        "objectClass": ["inetOrgPerson", "user"],
        "uid": name,
        "cn": f"Person {i}",
        "sn": f"P{i}",
        "displayName": f"Person {i}",
        "sAMAccountName": name,
        "objectCategory": "person",
        "userAccountControl": "514" if disabled else "512",
        "department": DEPARTMENTS[i % len(DEPARTMENTS)],
        "departmentNumber": DEPARTMENTS[i % len(DEPARTMENTS)],
        "physicalDeliveryOfficeName": SITES[i % len(SITES)],
        "l": SITES[i % len(SITES)],
        "title": "Manager" if i % 20 == 0 else "Engineer",
    }
    if i % 10 in (1, 2):
        attributes["preferredLanguage"] = "de" if i % 10 == 1 else "pt-br"
    if disabled:
        attributes["employeeType"] = "disabled"
    if i % 25 != 3:
        attributes["mail"] = f"{name}@example.com"
    if i % 30 != 9:
        number = f"+49 30 1234{i:04d}"
        attributes["telephoneNumber" if i % 10 == 5 else "mobile"] = number
    if i:
        attributes["manager"] = found.person_dn(uid(0))
    if groups:
        attributes["memberOf"] = groups
    return found.person_dn(name), attributes


# --- a connection that dies mid-search -------------------------------------------------------------


class CuttingProxy:
    """Forwards TCP connections on 127.0.0.1 to ``target_port``; closes a connection (both sides) once
    ``cut_after`` bytes came back from the server. ``cuts`` counts the connections it dropped."""

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"ldap://127.0.0.1:{self.port}"
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.cut_after), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(4096)
                if not data:
                    break
                if limit is not None and sent + len(data) > limit:
                    sink.sendall(data[: limit - sent])
                    self.cuts += 1
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()


# --- the Slack stand-in beside it ------------------------------------------------------------------


class SlackPeer:
    """Herald's Slack Web API stand-in on its own event loop in a thread, so that synchronous tests can
    drive the CLI (which runs its own loop) against it."""

    TOKEN = "xoxb-sync-test"

    def __init__(self, users: dict[str, dict[str, Any]] | None = None) -> None:
        import asyncio

        from bot.standins.slack import SlackStandIn

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.standin = SlackStandIn(token=self.TOKEN, users=users or {})
        self.api_url = self.call(self.standin.start())

    def call(self, coroutine: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def close(self) -> None:
        self.call(self.standin.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def config(self) -> str:
        return (
            f'[slack]\nbot_token = "{self.TOKEN}"\nsigning_secret = "sync-test-signing"\n'
            f'api_url = "{self.api_url}"\n'
        )


def slack_user(
    user_id: str,
    email: str | None,
    *,
    tz: str = "Europe/Berlin",
    deleted: bool = False,
    is_bot: bool = False,
    phone: str = "",
    name: str = "",
    locale: str = "en-US",
) -> dict[str, Any]:
    """A ``users.list`` member as Slack returns it (the fields Herald reads, and a few more)."""
    profile: dict[str, Any] = {"real_name": name or user_id, "display_name": user_id.lower(), "phone": phone}
    if email is not None:
        profile["email"] = email
    return {
        "id": user_id,
        "team_id": "T0HERALD",
        "name": user_id.lower(),
        "deleted": deleted,
        "real_name": name or user_id,
        "tz": tz,
        "locale": locale,  # sent only when include_locale is asked for
        "is_bot": is_bot,
        "is_app_user": False,
        "profile": profile,
    }
