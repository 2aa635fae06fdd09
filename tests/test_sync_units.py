"""The pure parts of directory sync, as tables: DNs, the attribute map, nested groups, Slack users."""

from __future__ import annotations

from typing import Any

import pytest

from bot.directory.records import PersonRecord
from bot.sync.errors import SyncError
from bot.sync.ldap_dn import dn_key, first_rdn_value, split_dn
from bot.sync.ldap_source import _Groups, attribute_map
from bot.sync.slack_source import SlackUser, enrich, slack_rows, user_from


@pytest.mark.parametrize(
    ("dn", "key"),
    [
        ("CN=Alice,OU=People,DC=example,DC=com", "cn=alice,ou=people,dc=example,dc=com"),
        ("cn=Alice , ou=People,  dc=example,dc=com", "cn=alice,ou=people,dc=example,dc=com"),
        (r"CN=Doe\, John,OU=People", "cn=doe, john,ou=people"),
        (r"cn=doe\2c john,ou=people", "cn=doe, john,ou=people"),
        (r"CN=J\C3\BCrgen,DC=x", "cn=jürgen,dc=x"),
    ],
)
def test_dn_key(dn: str, key: str) -> None:
    assert dn_key(dn) == key


@pytest.mark.parametrize(
    ("dn", "parts"),
    [
        ("CN=Network Ops,OU=Groups,DC=x", [("CN", "Network Ops"), ("OU", "Groups"), ("DC", "x")]),
        (r"CN=R\+D\, Berlin,DC=x", [("CN", "R+D, Berlin"), ("DC", "x")]),
        ("CN=a+UID=b,DC=x", [("CN", "a"), ("DC", "x")]),  # multi-valued RDN: the first value
        ("CN=a=b,DC=x", [("CN", "a=b"), ("DC", "x")]),
        ("", []),
    ],
)
def test_split_dn(dn: str, parts: list[tuple[str, str]]) -> None:
    assert split_dn(dn) == parts


def test_first_rdn_value() -> None:
    assert first_rdn_value(r"CN=Finance\, Berlin,OU=Groups,DC=x") == "Finance, Berlin"
    assert first_rdn_value("oncall") == "oncall"


def test_attribute_map_defaults_and_overrides() -> None:
    assert attribute_map({})["phone"] == ("mobile", "telephoneNumber")
    assert attribute_map({})["timezone"] == ()
    mapped = attribute_map({"ID": "uid", "groups": "", "timezone": " tz , "})
    assert (mapped["id"], mapped["groups"], mapped["timezone"]) == (("uid",), (), ("tz",))
    with pytest.raises(SyncError, match=r"^directory\.ldap\.attributes\.active: unknown field") as caught:
        attribute_map({"active": "x"})
    assert caught.value.reason == "config"


def test_nested_groups_with_a_cycle() -> None:
    groups = _Groups(
        names={"a": "A", "b": "B", "c": "C", "d": "D"},
        containing={"a": ["b"], "b": ["c", "a"], "c": ["b"], "d": []},
    )
    assert groups.ancestors("a") == {"b", "c"}
    assert groups.ancestors("c") == {"b", "a"}
    assert groups.ancestors("d") == frozenset()
    assert groups.ancestors("unknown") == frozenset()


@pytest.mark.parametrize(
    ("member", "user"),
    [
        ({"id": "B1", "is_bot": True}, None),
        ({"id": "USLACKBOT", "is_bot": False}, None),
        ({"id": "U1", "profile": {}}, SlackUser("U1")),
        (
            {
                "id": "U2",
                "name": "bob",
                "deleted": True,
                "tz": "Europe/Berlin",
                "profile": {"real_name": "Bob B", "email": "b@x.example", "phone": " ", "title": "Ops"},
            },
            SlackUser("U2", "Bob B", "b@x.example", None, "Ops", "Europe/Berlin", deleted=True),
        ),
        ({"id": "U3", "name": "carol", "profile": {"display_name": "Caz"}}, SlackUser("U3", "Caz")),
    ],
)
def test_user_from(member: dict[str, Any], user: SlackUser | None) -> None:
    assert user_from(member) == user


def test_enrich_fills_only_what_is_missing() -> None:
    people = [
        PersonRecord("a", email="a@x.example"),
        PersonRecord("b", email="b@x.example", slack_user_id="UKEEP", timezone="Asia/Tokyo"),
        PersonRecord("c", email="c@x.example"),
        PersonRecord("d"),
        PersonRecord("e", email="e@x.example"),
    ]
    users = [
        SlackUser("UA", email="A@X.example", timezone="america/new_york"),
        SlackUser("UB", email="b@x.example", timezone="Europe/Berlin"),
        SlackUser("UC", email="c@x.example", deleted=True),
        SlackUser("UE", email="e@x.example", timezone="Mars/Olympus"),
    ]
    enriched, matched = enrich(people, users)
    assert matched == 3
    assert [(p.id, p.slack_user_id, p.timezone) for p in enriched] == [
        ("a", "UA", "America/New_York"),
        ("b", "UKEEP", "Asia/Tokyo"),
        ("c", None, None),
        ("d", None, None),
        ("e", "UE", None),  # not an IANA zone: left out
    ]


def test_slack_rows() -> None:
    rows, notes = slack_rows(
        [SlackUser("U1", "Ann", "ann@x.example", "030 1234567", deleted=True)], default_region="DE"
    )
    assert rows[0].where == "slack user U1"
    assert (rows[0].values["phone"], rows[0].values["active"], rows[0].values["id"]) == (
        "030 1234567",
        False,
        "U1",
    )
    assert notes == []
    rows, notes = slack_rows([SlackUser("U2", phone="030 1234567")], default_region=None)
    assert rows[0].values["phone"] is None
    assert notes == [
        "slack user U2: phone left out: '030 1234567' has no country code (+…) "
        "and directory.default_region is not set"
    ]
