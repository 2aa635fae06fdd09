"""``herald directory sync`` from a real OpenLDAP server (Debian's slapd), on SQLite and PostgreSQL.

One slapd runs for the session (tests/ldap_server.py); each test loads its own copy of the test
directory under a fresh ``ou`` so tests can change entries without seeing each other's changes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_program
from ldap_server import (
    LIMITED_DN,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SUFFIX,
    CuttingProxy,
    Directory,
    LdapServer,
    SlackPeer,
    directory,
    free_port,
    slack_user,
)
from sqlalchemy import select

from bot.store import Store
from bot.tables import AuditEntry, Person, PersonGroup

PEOPLE = 240
DISABLED = {f"u{i:03d}" for i in range(PEOPLE) if i % 40 == 7}


@pytest.fixture
def tree(slapd: LdapServer) -> Directory:
    """A fresh copy of the test directory under its own ``ou``."""
    found = directory(f"ou=t{uuid.uuid4().hex[:10]},{SUFFIX}", PEOPLE)
    slapd.add(found.entries)
    return found


def ldap_config(db_url: str, address: str, tree: Directory, extra: str = "", **keys: object) -> str:
    """A TOML document: Active Directory defaults for everything but where the server is."""
    settings: dict[str, object] = {
        "url": address,
        "bind_dn": SERVICE_DN,
        "base_dn": tree.base_dn,
        "group_base_dn": tree.groups_dn,
        "page_size": 50,
        **keys,
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items() if value is not None]
    return (
        f'[database]\nurl = "{db_url}"\n\n[directory]\nsource = "ldap"\n\n'
        "[directory.ldap]\n" + "\n".join(lines) + "\n" + extra
    )


@pytest.fixture
def sync(cli: Any, tmp_path: Path) -> Any:
    """``herald directory sync --config F`` with the bind password from the environment."""

    def run(config: str, *args: str, password: str = SERVICE_PASSWORD) -> Any:
        path = tmp_path / f"herald-{uuid.uuid4().hex[:6]}.toml"
        path.write_text(config, encoding="utf-8")
        env = {"HERALD_DIRECTORY__LDAP__BIND_PASSWORD": password}
        return cli("directory", "sync", "--config", str(path), *args, env=env)

    return run


def snapshot(store: Store) -> tuple[dict[str, tuple[object, ...]], set[tuple[str, str]]]:
    with store.session() as session:
        people = {
            p.id: (p.name, p.email, p.phone, p.department, p.site, p.title, p.manager, p.active, p.source)
            for p in session.exec(select(Person)).scalars()  # type: ignore[call-overload]
        }
        groups = set(session.exec(select(PersonGroup.person_id, PersonGroup.group_name)).all())  # type: ignore[call-overload]
    return people, {(person_id, name) for person_id, name in groups}


def people(store: Store) -> dict[str, Person]:
    with store.session() as session:
        return {p.id: p for p in session.exec(select(Person)).scalars()}  # type: ignore[call-overload]


def audit(store: Store) -> list[AuditEntry]:
    with store.session() as session:
        return list(session.exec(select(AuditEntry).order_by(AuditEntry.id)).scalars())  # type: ignore[call-overload, arg-type]


def groups_of(store: Store, person_id: str) -> set[str]:
    return {name for pid, name in snapshot(store)[1] if pid == person_id}


# --- first sync --------------------------------------------------------------------------------------


def test_first_sync_with_active_directory_defaults(
    sync: Any, slapd: LdapServer, tree: Directory, db_url: str, store: Store
) -> None:
    result = sync(ldap_config(db_url, slapd.url, tree))
    assert (result.exit_code, result.stderr) == (0, ""), result.stderr
    assert result.stdout == (
        f"imported {PEOPLE} people ({PEOPLE} added, 0 changed, 0 unchanged, 0 deactivated), 0 rejected\n"
    )
    stored = people(store)
    assert len(stored) == PEOPLE
    assert {pid for pid, p in stored.items() if not p.active} == DISABLED  # userAccountControl bit 2
    first = stored["u001"]
    assert (first.name, first.email, first.phone, first.department, first.site, first.title) == (
        "Person 1",
        "u001@example.com",
        "+493012340001",
        "IT",
        "London",
        "Engineer",
    )
    assert (first.manager, stored["u000"].manager, first.source) == ("u000", None, "ldap")
    assert stored["u003"].email is None  # no mail: still loaded, by sAMAccountName
    assert stored["u005"].phone == "+493012340005"  # no mobile: telephoneNumber
    assert stored["u009"].phone is None  # neither
    # preferredLanguage, in its conventional case; none where the entry has none
    assert [stored[pid].language for pid in ("u001", "u002", "u003")] == ["de", "pt-BR", None]
    # memberOf gives direct groups; the group entries give nesting (and a cycle ends).
    assert groups_of(store, "u001") == {"oncall-network", "oncall", "it-staff"}
    assert groups_of(store, "u012") == {"oncall-db", "oncall", "it-staff"}
    assert groups_of(store, "u020") == {"oncall", "it-staff"}
    assert groups_of(store, "u040") == {"loop-a", "loop-b"}
    assert groups_of(store, "u100") == set()

    entry = audit(store)[-1]
    assert (entry.action, entry.subject, entry.actor) == ("directory.sync", "ldap", "herald directory sync")
    detail = json.loads(entry.detail)
    assert (detail["added"], detail["rejected"], detail["deactivated"]) == (PEOPLE, 0, 0)

    again = sync(ldap_config(db_url, slapd.url, tree), "--json")
    assert again.exit_code == 0
    document = json.loads(again.stdout)
    assert (document["source"], document["unchanged"], document["added"]) == ("ldap", PEOPLE, 0)


def test_attribute_map_to_standard_attributes(
    sync: Any, slapd: LdapServer, tree: Directory, db_url: str, store: Store
) -> None:
    """uid/cn/departmentNumber/l and a disabled filter on employeeType; groups from group entries only."""
    extra = (
        "[directory.ldap.attributes]\n"
        'id = "uid"\nname = "cn"\ndepartment = "departmentNumber"\nsite = "l"\ngroups = ""\n'
    )
    config = ldap_config(
        db_url,
        slapd.url,
        tree,
        extra,
        user_filter="(objectClass=inetOrgPerson)",
        disabled_filter="(employeeType=disabled)",
        group_filter="(objectClass=groupOfNames)",
        page_size=1000,
    )
    result = sync(config)
    assert result.exit_code == 0, result.stderr
    stored = people(store)
    assert {pid for pid, p in stored.items() if not p.active} == DISABLED
    assert (stored["u002"].department, stored["u002"].site) == ("Sales", "New York")
    assert groups_of(store, "u001") == {"oncall-network", "oncall", "it-staff"}


# --- changes and removals ---------------------------------------------------------------------------


def test_changes_additions_and_removals(
    sync: Any, slapd: LdapServer, tree: Directory, db_url: str, store: Store
) -> None:
    config = ldap_config(db_url, slapd.url, tree)
    assert sync(config).exit_code == 0
    with slapd.admin() as admin:
        admin.modify(tree.person_dn("u010"), {"title": [("MODIFY_REPLACE", ["Director"])]})
        admin.modify(tree.person_dn("u011"), {"userAccountControl": [("MODIFY_REPLACE", ["514"])]})
        admin.modify(tree.group_dn("oncall-db"), {"member": [("MODIFY_ADD", [tree.person_dn("u100")])]})
        admin.delete(tree.person_dn("u050"))
        dn, attributes = next(e for e in directory(tree.base_dn, 241).entries if e[0].startswith("uid=u240,"))
        admin.add(dn, attributes.pop("objectClass"), attributes)
    result = sync(config)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"imported {PEOPLE} people (1 added, 3 changed, {PEOPLE - 4} unchanged, 1 deactivated), 0 rejected\n"
    )
    stored = people(store)
    assert stored["u010"].title == "Director"
    assert stored["u011"].active is False
    assert stored["u050"].active is False  # gone from the directory: deactivated, never deleted
    assert stored["u240"].active is True
    assert groups_of(store, "u100") == {"oncall-db", "oncall", "it-staff"}


def test_bad_entry_is_reported_and_the_others_load(
    sync: Any, slapd: LdapServer, tree: Directory, db_url: str, store: Store
) -> None:
    config = ldap_config(db_url, slapd.url, tree)
    assert sync(config).exit_code == 0
    with slapd.admin() as admin:
        admin.modify(tree.person_dn("u077"), {"mail": [("MODIFY_REPLACE", ["not an address"])]})
        admin.modify(tree.person_dn("u078"), {"title": [("MODIFY_REPLACE", ["Architect"])]})
    result = sync(config)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"entry {tree.person_dn('u077')}: email: 'not an address' is not a valid email address "
        "(an email address must have an @-sign)"
    ]
    assert result.stdout.endswith(
        f"(0 added, 1 changed, {PEOPLE - 2} unchanged, 0 deactivated), 1 rejected\n"
    )
    stored = people(store)
    assert (stored["u077"].email, stored["u077"].active) == ("u077@example.com", True)  # kept as it was
    assert stored["u078"].title == "Architect"
    detail = json.loads(audit(store)[-1].detail)
    assert detail["rejected"] == 1 and detail["errors"][0]["field"] == "email"


# --- failures change nothing --------------------------------------------------------------------------


def test_failed_bind_changes_nothing(
    sync: Any, slapd: LdapServer, tree: Directory, db_url: str, store: Store
) -> None:
    config = ldap_config(db_url, slapd.url, tree)
    assert sync(config).exit_code == 0
    before = snapshot(store)
    with slapd.admin() as admin:
        admin.delete(tree.person_dn("u100"))
    result = sync(config, password="wrong-password")
    assert result.exit_code == 2
    assert result.stderr == (
        f"herald: {slapd.url}: bind as '{SERVICE_DN}' refused: invalidCredentials (nothing was changed)\n"
    )
    assert "wrong-password" not in result.stderr + result.stdout
    assert snapshot(store) == before
    failed = audit(store)[-1]
    assert failed.action == "directory.sync_failed"
    assert json.loads(failed.detail)["reason"] == "auth"


def test_connection_dropped_mid_search_changes_nothing(
    sync: Any, slapd: LdapServer, tree: Directory, db_url: str, store: Store
) -> None:
    assert sync(ldap_config(db_url, slapd.url, tree)).exit_code == 0
    before = snapshot(store)
    with slapd.admin() as admin:  # changes a complete sync would apply
        admin.delete(tree.person_dn("u100"))
        admin.modify(tree.person_dn("u001"), {"title": [("MODIFY_REPLACE", ["Director"])]})
    proxy = CuttingProxy(slapd.port, cut_after=20_000)  # the bind and a few pages of 20, then gone
    try:
        result = sync(ldap_config(db_url, proxy.url, tree, page_size=20))
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert result.exit_code == 2
    assert result.stderr.startswith(f"herald: {proxy.url}: search of people under '{tree.base_dn}': ")
    assert "connection lost" in result.stderr and result.stderr.endswith("(nothing was changed)\n")
    assert snapshot(store) == before


def test_search_stopped_by_a_size_limit_changes_nothing(
    sync: Any, slapd: LdapServer, tree: Directory, db_url: str, store: Store
) -> None:
    """The server ends the paged search after 150 entries: a truncated read must not deactivate anyone."""
    assert sync(ldap_config(db_url, slapd.url, tree)).exit_code == 0
    before = snapshot(store)
    result = sync(ldap_config(db_url, slapd.url, tree, bind_dn=LIMITED_DN))
    assert result.exit_code == 2
    assert result.stderr == (
        f"herald: {slapd.url}: search of people under '{tree.base_dn}' stopped early: "
        "sizeLimitExceeded (nothing was changed)\n"
    )
    assert snapshot(store) == before


def test_server_not_listening(sync: Any, tree: Directory, db_url: str, store: Store) -> None:
    url = f"ldap://127.0.0.1:{free_port()}"
    result = sync(ldap_config(db_url, url, tree))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"herald: {url}: cannot connect: ")
    assert people(store) == {}


@pytest.mark.parametrize(
    ("keys", "extra", "message"),
    [
        ({"url": None}, "", "directory.ldap.url is not set (required with directory.source = 'ldap')"),
        (
            {"base_dn": None},
            "",
            "directory.ldap.base_dn is not set (required with directory.source = 'ldap')",
        ),
        (
            {"url": "http://127.0.0.1"},
            "",
            "directory.ldap.url: expected ldap://HOST[:PORT] or ldaps://HOST[:PORT]",
        ),
        (
            {},
            '[directory.ldap.attributes]\nmobile_phone = "mobile"\n',
            "directory.ldap.attributes.mobile_phone: unknown field (expected one of id, name, email, phone, "
            "department, site, title, manager, groups, timezone, slack_user_id, language)",
        ),
    ],
)
def test_configuration_problems(
    sync: Any, slapd: LdapServer, tree: Directory, db_url: str, keys: dict[str, Any], extra: str, message: str
) -> None:
    result = sync(ldap_config(db_url, slapd.url, tree, extra, **keys))
    assert (result.exit_code, result.stderr) == (2, f"herald: {message} (nothing was changed)\n")


def test_invalid_filter(sync: Any, slapd: LdapServer, tree: Directory, db_url: str) -> None:
    result = sync(ldap_config(db_url, slapd.url, tree, user_filter="(objectClass=user"))
    assert result.exit_code == 2
    assert "invalid filter '(objectClass=user'" in result.stderr


# --- Slack fills in Slack ids and time zones -----------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[SlackPeer]:
    peer = SlackPeer(
        {
            "U0AAA001": slack_user("U0AAA001", "U001@Example.com", tz="America/New_York"),
            "U0AAA002": slack_user("U0AAA002", "u002@example.com", deleted=True),
            "B0BOT": slack_user("B0BOT", "u004@example.com", is_bot=True),
            "U0AAA006": slack_user("U0AAA006", "u006@example.com", tz="Europe/London", locale="fr-FR"),
            "U0OTHER": slack_user("U0OTHER", "someone@elsewhere.example"),
        }
    )
    try:
        yield peer
    finally:
        peer.close()


def test_slack_fills_ids_and_time_zones_by_email(
    sync: Any, slapd: LdapServer, tree: Directory, db_url: str, store: Store, slack: SlackPeer
) -> None:
    result = sync(ldap_config(db_url, slapd.url, tree) + slack.config())
    assert result.exit_code == 0, result.stderr
    assert result.stdout.endswith("0 rejected, 2 matched in Slack\n")
    stored = people(store)
    assert (stored["u001"].slack_user_id, stored["u001"].timezone) == ("U0AAA001", "America/New_York")
    assert (stored["u006"].slack_user_id, stored["u006"].timezone) == ("U0AAA006", "Europe/London")
    # Slack's locale fills a missing language; the directory's own (u001: de) is kept
    assert (stored["u006"].language, stored["u001"].language) == ("fr-FR", "de")
    assert stored["u002"].slack_user_id is None  # a deleted Slack user is not matched
    assert stored["u004"].slack_user_id is None  # nor is a bot
    assert [call.args.get("limit") for call in slack.standin.calls_to("users.list")] == ["200"]


def test_slack_failing_fails_the_whole_sync(
    sync: Any, slapd: LdapServer, tree: Directory, db_url: str, store: Store, slack: SlackPeer
) -> None:
    """Without Slack's answer every Slack id would be cleared: the sync stops instead."""
    config = ldap_config(db_url, slapd.url, tree) + slack.config()
    assert sync(config).exit_code == 0
    before = snapshot(store)
    slack.standin.fail("users.list", "invalid_auth")
    result = sync(config)
    assert (result.exit_code, result.stderr) == (
        2,
        "herald: slack users.list failed: invalid_auth (nothing was changed)\n",
    )
    assert snapshot(store) == before
    assert people(store)["u001"].slack_user_id == "U0AAA001"


# --- TLS: StartTLS and ldaps://, certificates verified ----------------------------------------------------


@pytest.fixture(scope="session")
def slapd_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    slapd_path, openssl = require_program("slapd"), require_program("openssl")
    server = LdapServer(tmp_path_factory.mktemp("slapd-tls"), slapd=slapd_path, openssl=openssl)
    server.configure(directory(f"ou=tls,{SUFFIX}", 30).entries)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ldap3 2.9.1 checks the host name with ssl.match_hostname, deprecated (and warning) on Python 3.11.
TLS_WARNING = "ignore:ssl.match_hostname:DeprecationWarning"


@pytest.mark.filterwarnings(TLS_WARNING)
@pytest.mark.parametrize("mode", ["starttls", "ldaps"])
def test_tls_with_a_trusted_certificate(
    cli: Any, tmp_path: Path, slapd_tls: LdapServer, db_url: str, store: Store, mode: str
) -> None:
    tree = Directory(f"ou=tls,{SUFFIX}", f"ou=people,ou=tls,{SUFFIX}", f"ou=groups,ou=tls,{SUFFIX}")
    url = slapd_tls.url if mode == "starttls" else slapd_tls.ldaps_url
    config = tmp_path / "herald.toml"
    config.write_text(ldap_config(db_url, url, tree, start_tls=mode == "starttls"))
    env = {"HERALD_DIRECTORY__LDAP__BIND_PASSWORD": SERVICE_PASSWORD, "SSL_CERT_FILE": str(slapd_tls.ca_file)}
    result = cli("directory", "sync", "--config", str(config), env=env)
    assert result.exit_code == 0, result.stderr
    assert len(people(store)) == 30


@pytest.mark.filterwarnings(TLS_WARNING)
@pytest.mark.parametrize("mode", ["starttls", "ldaps"])
def test_tls_with_an_unknown_certificate_authority(
    cli: Any, tmp_path: Path, slapd_tls: LdapServer, db_url: str, store: Store, mode: str
) -> None:
    tree = Directory(f"ou=tls,{SUFFIX}", f"ou=people,ou=tls,{SUFFIX}", f"ou=groups,ou=tls,{SUFFIX}")
    url = slapd_tls.url if mode == "starttls" else slapd_tls.ldaps_url
    config = tmp_path / "herald.toml"
    config.write_text(ldap_config(db_url, url, tree, start_tls=mode == "starttls"))
    other_ca = tmp_path / "empty.pem"
    other_ca.write_text("")
    env = {"HERALD_DIRECTORY__LDAP__BIND_PASSWORD": SERVICE_PASSWORD, "SSL_CERT_FILE": str(other_ca)}
    result = cli("directory", "sync", "--config", str(config), env=env)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"herald: {url}: ")
    assert f"herald: {url}: TLS failed: " in result.stderr and "('" not in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr and result.stderr.endswith("(nothing was changed)\n")
    assert people(store) == {}
