"""Audiences evaluated in the database (SQLite, and PostgreSQL when configured): who each query
selects, the reach counts with suppressions, and the condition used in an INSERT ... SELECT."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pytest
from sqlalchemy import event, func, insert, literal, select

from bot.directory.audience import parse_audience
from bot.directory.audience_sql import audience_condition
from bot.directory.reach import anyone, reach
from bot.directory.records import PersonRecord
from bot.directory.store import import_people
from bot.store import Store
from bot.tables import Delivery, Group, Notification, Person, Suppression

PEOPLE = [
    PersonRecord(
        id="alice",
        name="Alice Archer",
        email="alice@example.com",
        phone="+14155552671",
        department="Finance",
        site="Berlin",
        title="Finance Manager",
        groups=("oncall-network", "Managers"),
        slack_user_id="U0ALICE1",
    ),
    PersonRecord(
        id="bob",
        name="Bob Baker",
        email="bob@example.com",
        phone="+14155550199",
        department="IT",
        site="Berlin",
        title="IT Manager",
        manager="alice",
        groups=("oncall-network",),
        slack_user_id="U0BOB001",
    ),
    PersonRecord(
        id="carol",
        name="Carol Chen",
        email="carol@example.com",
        department="IT",
        site="New York",
        title="Network Engineer",
        manager="Alice@Example.com",
        groups=("oncall-network", "contractors"),
    ),
    PersonRecord(
        id="dan",
        name="Dan Diaz",
        phone="+49301234567",
        department="HR",
        site="Berlin",
        title="Recruiter",
        manager="ALICE",
    ),
    PersonRecord(
        id="Erin",
        name="Erin Evans",
        email="erin@example.com",
        phone="+442079460958",
        department="Finance",
        site="London",
        title="Accountant",
        manager="bob@example.com",
        slack_user_id="U0ERIN01",
    ),
    PersonRecord(
        id="frank",
        name="Frank Fox",
        email="frank@example.com",
        department="Sales",
        site="New York",
        groups=("contractors",),
        manager="alice",
        active=False,
    ),
    PersonRecord(
        id="gina",
        name="Gina Gray",
        email="gina@example.com",
        title="Head of 100% Uptime",
        manager="ghost@example.com",
    ),
]
ACTIVE = ["Erin", "alice", "bob", "carol", "dan", "gina"]


@pytest.fixture
def directory(store: Store) -> Store:
    import_people(store, PEOPLE, now=1.0)
    with store.session() as session:
        network = session.get(Group, "oncall-network")
        assert network is not None
        network.slack_usergroup_id = "S0NET"
        session.add(Suppression(channel="email", address="Bob@Example.com", reason="bounced"))
        session.add(Suppression(channel="sms", address="+14155552671", reason="STOP"))
        session.add(Suppression(channel="email", address="nobody@example.com", reason="bounced"))
        session.commit()
    return store


def selected(
    store: Store, query: str, slack_groups: Mapping[str, Collection[str]] | None = None
) -> list[str]:
    condition = audience_condition(parse_audience(query), slack_groups)
    with store.begin() as connection:
        return sorted(connection.scalars(select(Person.id).where(condition)))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("everyone", ACTIVE),
        ("dept:finance", ["Erin", "alice"]),
        ("DEPT:FINANCE,hr", ["Erin", "alice", "dan"]),
        ("-dept:finance", ["bob", "carol", "dan", "gina"]),
        ("dept:finance site:berlin", ["alice"]),
        ('site:"new york"', ["carol"]),
        ("site:berlin,london -dept:it", ["Erin", "alice", "dan"]),
        ("title:manager", ["alice", "bob"]),
        ("-title:manager", ["Erin", "carol", "dan", "gina"]),
        ("title:100%", ["gina"]),
        ("title:_", []),
        ("title:man,recruit", ["alice", "bob", "dan"]),
        ("group:ONCALL-network", ["alice", "bob", "carol"]),
        ("group:managers,contractors", ["alice", "carol"]),
        ("group:oncall-network -group:contractors", ["alice", "bob"]),
        ("-group:oncall-network", ["Erin", "dan", "gina"]),
        ("person:ALICE", ["alice"]),
        ("person:erin", ["Erin"]),
        ("person:Erin@Example.com,bob", ["Erin", "bob"]),
        ("person:frank@example.com", []),
        ("<@U0BOB001>", ["bob"]),
        ("<@u0bob001|bob>", ["bob"]),
        ("-<@U0BOB001> dept:it", ["carol"]),
        ("<!subteam^S0NET>", ["alice", "bob", "carol"]),
        ("<!subteam^S0NET|@net> -<@U0BOB001>", ["alice", "carol"]),
        ("<!subteam^S0NONE>", []),
        ("everyone -everyone", []),
        ("dept:nothing", []),
    ],
)
def test_audience_selects(directory: Store, query: str, expected: list[str]) -> None:
    assert selected(directory, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # manager: matches the manager field by the named person's id or email, either way round
        ("manager:alice", ["bob", "carol", "dan"]),
        ("manager:ALICE@example.com", ["bob", "carol", "dan"]),
        ("manager:bob", ["Erin"]),
        ("manager:BOB@EXAMPLE.COM", ["Erin"]),
        ("manager:erin", []),
        ("manager:ghost@example.com", ["gina"]),
        ("manager:alice,bob", ["Erin", "bob", "carol", "dan"]),
        ("-manager:alice", ["Erin", "alice", "gina"]),
        ("manager:alice site:berlin", ["bob", "dan"]),
        # OR and parentheses: AND binds tighter than OR
        ("(dept:finance site:berlin) OR group:contractors", ["alice", "carol"]),
        ("dept:finance OR dept:it site:berlin", ["Erin", "alice", "bob"]),
        ("(dept:finance OR dept:it) site:berlin", ["alice", "bob"]),
        ("dept:hr or title:accountant or person:gina", ["Erin", "dan", "gina"]),
        ("everyone -(dept:it OR site:berlin)", ["Erin", "gina"]),
        ("-(dept:it site:berlin)", ["Erin", "alice", "carol", "dan", "gina"]),
        ("-(-dept:it)", ["bob", "carol"]),
        ("manager:alice OR person:alice", ["alice", "bob", "carol", "dan"]),
        ("(manager:alice -site:berlin) OR <@U0ERIN01>", ["Erin", "carol"]),
        (
            "(<!subteam^S0NET> -group:contractors) OR (dept:hr (site:london OR site:berlin))",
            ["alice", "bob", "dan"],
        ),
        ("((dept:finance)) OR ((dept:sales))", ["Erin", "alice"]),
        ("dept:nothing OR site:nowhere", []),
    ],
)
def test_audience_selects_with_or_groups_and_managers(
    directory: Store, query: str, expected: list[str]
) -> None:
    assert selected(directory, query) == expected


def test_an_or_audience_is_one_statement(directory: Store) -> None:
    """However it is written, an audience compiles to one SELECT: no query per person or per term."""
    statements: list[str] = []
    condition = audience_condition(parse_audience("(dept:it site:berlin) OR manager:alice OR group:managers"))
    with directory.begin() as connection:
        event.listen(connection, "before_cursor_execute", lambda *args: statements.append(args[2]))
        assert sorted(connection.scalars(select(Person.id).where(condition))) == [
            "alice",
            "bob",
            "carol",
            "dan",
        ]
    assert len(statements) == 1


def test_slack_user_group_members_from_slack(directory: Store) -> None:
    members = {"S0OPS": ["U0ERIN01", "u0alice1", "U0NOBODY"], "S0NET": ["U0ERIN01"]}
    assert selected(directory, "<!subteam^S0OPS>", members) == ["Erin", "alice"]
    assert selected(directory, "<!subteam^S0NET>", members) == ["Erin", "alice", "bob", "carol"]
    assert selected(directory, "<!subteam^S0OTHER>", members) == []


def test_inactive_people_are_never_selected(directory: Store) -> None:
    assert selected(directory, "person:frank") == []
    assert selected(directory, "group:contractors") == ["carol"]


def test_condition_feeds_insert_select(directory: Store) -> None:
    condition = audience_condition(parse_audience("group:oncall-network"))
    with directory.begin() as connection:
        connection.execute(insert(Notification).values(id="n1", severity="info", title="t"))
        source = select(literal("n1"), Person.id, literal("email"), Person.email).where(
            condition, Person.email.is_not(None)
        )
        connection.execute(
            insert(Delivery).from_select(["notification_id", "person_id", "channel", "address"], source)
        )
        rows = connection.execute(
            select(Delivery.person_id, Delivery.address).order_by(Delivery.person_id)
        ).all()
        assert connection.scalar(select(func.count()).select_from(Delivery)) == 3
    assert [tuple(row) for row in rows] == [
        ("alice", "alice@example.com"),
        ("bob", "bob@example.com"),
        ("carol", "carol@example.com"),
    ]


def test_reach_counts_with_reasons(directory: Store) -> None:
    result = reach(directory, parse_audience("everyone"), sample=3)
    assert result.count == 6
    assert result.inactive == 1
    assert dict(result.reachable) == {"email": 4, "sms": 3, "slack": 3}
    assert {k: dict(v) for k, v in result.unreachable.items()} == {
        "email": {"no_email": 1, "suppressed": 1},
        "sms": {"no_phone": 2, "suppressed": 1},
        "slack": {"no_slack_user": 3, "suppressed": 0},
    }
    assert result.flat_unreachable() == {
        "no_email": 1,
        "suppressed_email": 1,
        "no_phone": 2,
        "suppressed_sms": 1,
        "no_slack_user": 3,
        "suppressed_slack": 0,
    }
    assert [(p.id, p.groups) for p in result.sample] == [
        ("alice", ("Managers", "oncall-network")),
        ("bob", ("oncall-network",)),
        ("carol", ("contractors", "oncall-network")),
    ]


def test_reach_of_one_channel_and_of_no_one(directory: Store) -> None:
    result = reach(directory, parse_audience("dept:sales"), channels=("sms",), sample=0)
    assert (result.count, result.inactive, dict(result.reachable), result.sample) == (0, 1, {"sms": 0}, ())
    assert {k: dict(v) for k, v in result.unreachable.items()} == {"sms": {"no_phone": 0, "suppressed": 0}}
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        reach(directory, parse_audience("everyone"), channels=("fax",))


@pytest.mark.parametrize(
    ("query", "groups"),
    [
        ("everyone", None),
        ("dept:sales", None),  # only frank, who is inactive
        ("person:frank", None),
        ("group:contractors", None),
        ("<!subteam^S0OPS>", {"S0OPS": ["U0ERIN01"]}),
        ("<!subteam^S0OPS>", {"S0OPS": ["U0NOBODY"]}),
    ],
)
def test_anyone_agrees_with_the_reach_count(
    directory: Store, query: str, groups: Mapping[str, Collection[str]] | None
) -> None:
    audience = parse_audience(query)
    expected = reach(directory, audience, slack_groups=groups, sample=0).count > 0
    assert anyone(directory, audience, groups) is expected
