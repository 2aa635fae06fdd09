"""``herald directory import / sync / show`` driven through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.directory.records import PersonRecord
from bot.directory.store import import_people
from bot.store import Store
from bot.tables import Group, Person, PersonGroup, Suppression

DATA = Path(__file__).parent / "data"
FIELDS_HELP = (
    "id, name, email, phone, department, site, title, manager, groups, timezone, slack_user_id, "
    "language, active"
)


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    return {"HERALD_DATABASE__URL": db_url, "HERALD_DIRECTORY__DEFAULT_REGION": "US"}


def people(store: Store) -> dict[str, Person]:
    with store.session() as session:
        return {p.id: p for p in session.exec(select(Person)).scalars()}  # type: ignore[call-overload]


def memberships(store: Store) -> set[tuple[str, str]]:
    with store.session() as session:
        rows = session.exec(select(PersonGroup.person_id, PersonGroup.group_name)).all()  # type: ignore[call-overload]
    return {(person_id, name) for person_id, name in rows}


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


# --- import ----------------------------------------------------------------------------------


def test_import_csv_then_reimport_is_idempotent(cli: Any, env: dict[str, str], store: Store) -> None:
    result = cli("directory", "import", str(DATA / "people.csv"), env=env)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == "imported 6 people (6 added, 0 changed, 0 unchanged, 0 deactivated), 0 rejected\n"

    stored = people(store)
    alice = stored["alice"]
    assert (alice.email, alice.phone, alice.timezone, alice.slack_user_id, alice.active, alice.source) == (
        "alice.archer@example.com",
        "+14155552671",
        "Europe/Berlin",
        "U0ALICE1",
        True,
        "file",
    )
    assert stored["bob"].phone == "+14155550199"  # a national number read in the default region
    assert stored["frank@example.com"].active is False
    assert stored["dan"].email is None
    assert memberships(store) == {
        ("alice", "oncall-network"),
        ("alice", "Managers"),
        ("bob", "oncall-network"),
        ("carol", "oncall-network"),
        ("carol", "contractors"),
        ("frank@example.com", "contractors"),
    }
    with store.session() as session:
        groups = sorted(session.exec(select(Group.name)).scalars())  # type: ignore[call-overload]
    assert groups == ["Managers", "contractors", "oncall-network"]
    stamps = {p.id: p.updated_at for p in stored.values()}

    again = cli("directory", "import", str(DATA / "people.csv"), env=env)
    assert again.exit_code == 0
    assert again.stdout == "imported 6 people (0 added, 0 changed, 6 unchanged, 0 deactivated), 0 rejected\n"
    assert {p.id: p.updated_at for p in people(store).values()} == stamps


def test_import_changes_fields_and_replaces_groups(
    cli: Any, env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    cli("directory", "import", str(DATA / "people.csv"), env=env)
    changed = (
        (DATA / "people.csv")
        .read_text()
        .replace("Network Engineer,bob,oncall-network;contractors", "Lead,bob,MANAGERS")
    )
    result = cli("directory", "import", write(tmp_path, "people.csv", changed), env=env)
    assert result.stdout == "imported 6 people (0 added, 1 changed, 5 unchanged, 0 deactivated), 0 rejected\n"
    assert people(store)["carol"].title == "Lead"
    # Groups are replaced, and a group keeps its stored spelling whatever the case in the file.
    assert {name for person_id, name in memberships(store) if person_id == "carol"} == {"Managers"}


def test_import_json(cli: Any, env: dict[str, str], store: Store) -> None:
    result = cli("directory", "import", str(DATA / "people.json"), env=env)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == "imported 3 people (3 added, 0 changed, 0 unchanged, 0 deactivated), 0 rejected\n"
    stored = people(store)
    assert stored["bob"].phone == "+14155550199"
    assert stored["frank@example.com"].active is False
    assert ("alice", "Managers") in memberships(store)


def test_bad_rows_are_reported_and_good_rows_load(
    cli: Any, env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "people.csv",
        "id,name,email,phone,timezone,active\n"
        "alice,Alice,alice@example.com,+1 415 555 2671,Europe/Berlin,yes\n"
        "bob,Bob,bob@@example,,,\n"
        "carol,Carol,carol@example.com,12,Mars/Olympus,maybe\n"
        "dan,Dan,dan@example.com,(415) 555-0199,,\n"
        "alice,Alice Again,alice2@example.com,,,\n"
        "erin,Erin,DAN@example.com,,,\n",
    )
    result = cli("directory", "import", path, env=env)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "line 3: email: 'bob@@example' is not a valid email address "
        "(the part after the @-sign contains invalid characters: '@')",
        "line 4: phone: '12' is not a valid phone number",
        "line 4: timezone: 'Mars/Olympus' is not an IANA time zone (such as Europe/Berlin)",
        "line 4: active: 'maybe' is not one of true/false, yes/no, 1/0",
        "line 6: id: 'alice' already appears on line 2",
        "line 7: email: 'dan@example.com' already appears on line 5",
    ]
    assert result.stdout == "imported 2 people (2 added, 0 changed, 0 unchanged, 0 deactivated), 4 rejected\n"
    assert sorted(people(store)) == ["alice", "dan"]


def test_national_phone_without_default_region(cli: Any, db_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "id,phone\nbob,(415) 555-0199\nalice,+1 415 555 2671\n")
    result = cli("directory", "import", path, env={"HERALD_DATABASE__URL": db_url})
    assert result.exit_code == 1
    assert result.stderr == (
        "line 2: phone: '(415) 555-0199' has no country code (+…) and directory.default_region is not set\n"
    )
    assert result.stdout == "imported 1 person (1 added, 0 changed, 0 unchanged, 0 deactivated), 1 rejected\n"


def test_import_json_output(cli: Any, env: dict[str, str], tmp_path: Path) -> None:
    path = write(
        tmp_path, "p.json", '[{"id": "a", "email": "a@example.com"}, {"id": "b", "timezone": "Moon/Base"}]'
    )
    result = cli("directory", "import", path, "--json", env=env)
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "file": path,
        "imported": 1,
        "added": 1,
        "changed": 0,
        "unchanged": 0,
        "deactivated": 0,
        "rejected": 1,
        "errors": [
            {
                "where": "item 1",
                "field": "timezone",
                "reason": "'Moon/Base' is not an IANA time zone (such as Europe/Berlin)",
            }
        ],
    }


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p.csv", b"", "{path}: empty"),
        ("p.csv", b"id,email\n", "{path}: no people after the header"),
        (
            "p.csv",
            b"id,email,fax,Pager\nalice,a@example.com,,\n",
            "{path}: unknown columns 'fax', 'pager' (expected " + FIELDS_HELP + ")",
        ),
        ("p.csv", b"name,phone\nAlice,+14155552671\n", "{path}: needs an 'id' or an 'email' column"),
        (
            "p.csv",
            b"id,name\nalice,Alice\nbob,Bj\xf6rn\n",
            "{path}: line 3: not valid UTF-8 (byte 0xf6); save the file as UTF-8",
        ),
        (
            "p.json",
            b"[{",
            "{path}: not valid JSON: line 1 column 3: Expecting property name enclosed in double quotes",
        ),
    ],
)
def test_unusable_file_exits_2_and_loads_nothing(
    cli: Any, env: dict[str, str], store: Store, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = write(tmp_path, name, content)
    result = cli("directory", "import", path, env=env)
    assert result.exit_code == 2
    assert result.stderr == f"herald: {message.format(path=path)}\n"
    assert result.stdout == ""
    assert people(store) == {}


def test_missing_file_exits_2(cli: Any, env: dict[str, str], tmp_path: Path) -> None:
    result = cli("directory", "import", str(tmp_path / "nope.csv"), env=env)
    assert (result.exit_code, result.stderr) == (2, f"herald: {tmp_path / 'nope.csv'}: file not found\n")


def test_deactivate_missing(cli: Any, env: dict[str, str], store: Store, tmp_path: Path) -> None:
    cli("directory", "import", str(DATA / "people.csv"), env=env)
    import_people(store, [PersonRecord(id="ldap-only", email="l@example.com")], source="ldap")
    # carol's row is now invalid: she stays as she was rather than being deactivated.
    subset = write(
        tmp_path,
        "subset.csv",
        "id,name,email\nalice,Alice Archer,alice.archer@example.com\ncarol,Carol,not-an-email\n",
    )
    result = cli("directory", "import", subset, "--deactivate-missing", env=env)
    assert result.exit_code == 1
    assert result.stdout == "imported 1 person (0 added, 1 changed, 0 unchanged, 3 deactivated), 1 rejected\n"
    active = {p.id: p.active for p in people(store).values()}
    assert active == {
        "alice": True,
        "bob": False,
        "carol": True,
        "dan": False,
        "erin": False,
        "frank@example.com": False,
        "ldap-only": True,
    }
    # Without the flag, nobody is deactivated; a file of only bad rows deactivates nobody either.
    again = cli("directory", "import", subset, env=env)
    assert again.stdout == "imported 1 person (0 added, 0 changed, 1 unchanged, 0 deactivated), 1 rejected\n"
    bad = write(tmp_path, "bad.csv", "id,email\nalice,nope\n")
    refused = cli("directory", "import", bad, "--deactivate-missing", env=env)
    assert refused.stderr.splitlines()[-1] == f"herald: {bad}: no valid rows, so nobody was deactivated"
    assert people(store)["alice"].active is True


# --- sync ------------------------------------------------------------------------------------


def test_sync_imports_the_configured_file_with_deactivation(
    cli: Any, db_url: str, store: Store, tmp_path: Path
) -> None:
    source = tmp_path / "directory.csv"
    shutil.copy(DATA / "people.csv", source)
    config = tmp_path / "herald.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n\n'
        f'[directory]\nsource = "file"\npath = "{source}"\ndefault_region = "US"\n'
    )
    first = cli("directory", "sync", "--config", str(config))
    assert first.exit_code == 0, first.stderr
    assert first.stdout == "imported 6 people (6 added, 0 changed, 0 unchanged, 0 deactivated), 0 rejected\n"
    lines = source.read_text().splitlines()
    source.write_text("\n".join(line for line in lines if not line.startswith("bob,")) + "\n")
    second = cli("directory", "sync", "--config", str(config))
    assert second.stdout == "imported 5 people (0 added, 0 changed, 5 unchanged, 1 deactivated), 0 rejected\n"
    assert people(store)["bob"].active is False


def test_sync_without_a_path_exits_2(cli: Any, env: dict[str, str]) -> None:
    result = cli("directory", "sync", env=env | {"HERALD_DIRECTORY__SOURCE": "file"})
    assert (result.exit_code, result.stdout) == (2, "")
    assert (
        result.stderr == "herald: directory.path is not set (the file that directory.source = 'file' reads)\n"
    )


# --- show ------------------------------------------------------------------------------------


@pytest.fixture
def loaded(cli: Any, env: dict[str, str], store: Store) -> Store:
    assert cli("directory", "import", str(DATA / "people.csv"), env=env).exit_code == 0
    with store.session() as session:
        session.add(Suppression(channel="email", address="bob@example.com", reason="bounced"))
        session.add(Suppression(channel="sms", address="+14155552671", reason="STOP"))
        session.commit()
    return store


def test_show_json(cli: Any, env: dict[str, str], loaded: Store) -> None:
    result = cli("directory", "show", "site:berlin,london", "--json", "--limit", "2", env=env)
    assert (result.exit_code, result.stderr) == (0, "")
    assert json.loads(result.stdout) == {
        "count": 4,
        "reachable": {"email": 2, "sms": 3, "slack": 3},
        "unreachable": {
            "no_email": 1,
            "suppressed_email": 1,
            "no_phone": 0,
            "suppressed_sms": 1,
            "no_slack_user": 1,
            "suppressed_slack": 0,
        },
        "inactive": 0,
        "people": [
            {
                "id": "alice",
                "name": "Alice Archer",
                "email": "alice.archer@example.com",
                "phone": "+14155552671",
                "department": "Finance",
                "site": "Berlin",
                "title": "Finance Manager",
                "language": None,
                "groups": ["Managers", "oncall-network"],
            },
            {
                "id": "bob",
                "name": "Bob Baker",
                "email": "bob@example.com",
                "phone": "+14155550199",
                "department": "IT",
                "site": "Berlin",
                "title": "IT Manager",
                "language": None,
                "groups": ["oncall-network"],
            },
        ],
    }


def test_show_text(cli: Any, env: dict[str, str], loaded: Store) -> None:
    result = cli("directory", "show", 'group:oncall-network,contractors -site:"new york"', env=env)
    assert (result.exit_code, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0] == '2 people match group:oncall-network,contractors -site:"new york"'
    table = "\n".join(lines[1:-3])
    assert "alice.archer@example.com" in table
    assert "bob@example.com" in table
    assert lines[-3:] == [
        "email: 1 reachable, 1 suppressed",
        "sms: 1 reachable, 1 suppressed",
        "slack: 2 reachable",
    ]


def test_show_text_counts_inactive_and_lists_more(cli: Any, env: dict[str, str], loaded: Store) -> None:
    result = cli("directory", "show", "everyone", "--limit", "1", env=env)
    lines = result.stdout.splitlines()
    assert lines[0] == "5 people match everyone (1 inactive not counted)"
    assert "… and 4 more (--limit N lists more)" in lines
    assert lines[-3:] == [
        "email: 3 reachable, 1 no email, 1 suppressed",
        "sms: 3 reachable, 1 no phone, 1 suppressed",
        "slack: 3 reachable, 2 no slack user",
    ]


def test_show_no_match_exits_1(cli: Any, env: dict[str, str], loaded: Store) -> None:
    result = cli("directory", "show", "dept:legal", env=env)
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        "herald: no one matches 'dept:legal'\n",
    )
    inactive = cli("directory", "show", "dept:sales", "--json", env=env)
    assert inactive.exit_code == 1
    assert inactive.stderr == "herald: no one matches 'dept:sales' (only 1 inactive person)\n"
    assert json.loads(inactive.stdout)["count"] == 0


def test_show_bad_query_exits_2(cli: Any, env: dict[str, str]) -> None:
    result = cli("directory", "show", "everyone dept:", env=env)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "herald: bad audience: at 14: expected a value after 'dept:'\n"
