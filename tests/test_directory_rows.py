"""Reading and validating directory rows and files: pure tables, no database."""

from __future__ import annotations

from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email

from bot.directory.fields import (
    InvalidField,
    parse_active,
    parse_email,
    parse_groups,
    parse_language,
    parse_phone,
    parse_timezone,
)
from bot.directory.files import DirectoryFileError, parse_people, read_people
from bot.directory.records import InvalidRow, PersonRecord, validate_row

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ("Alice.Archer@Example.COM", "alice.archer@example.com"),
        ("o'brien+tag@sub.example.org", "o'brien+tag@sub.example.org"),
        ("José@Exämple.com", "josé@exämple.com"),
    ],
)
def test_parse_email_normalises_to_lower_case(value: str, expected: str) -> None:
    assert parse_email(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            "bob@@example",
            "'bob@@example' is not a valid email address "
            "(the part after the @-sign contains invalid characters: '@')",
        ),
        ("bob", "'bob' is not a valid email address (an email address must have an @-sign)"),
        (
            "bob@localhost",
            "'bob@localhost' is not a valid email address "
            "(the part after the @-sign is not valid. It should have a period)",
        ),
        (
            "a..b@example.com",
            "'a..b@example.com' is not a valid email address "
            "(an email address cannot have two periods in a row)",
        ),
    ],
)
def test_parse_email_rejects_with_the_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_email(value)
    assert (caught.value.field, caught.value.reason) == ("email", reason)


@pytest.mark.parametrize(
    "value",
    [
        "a@example.com",
        "A.b-c@Example.COM",
        "x@example..com",
        "x@-example.com",
        "x@example.com.",
        "x@example.test",
        ".x@example.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 64 + ".com",
        "a@1.2.3.4",
        "#!$%&'*+/=?^_`{|}~-@example.com",
    ],
)
def test_parse_email_fast_path_agrees_with_email_validator(value: str) -> None:
    try:
        expected: str | None = validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        expected = None
    for _ in range(2):  # the second time the domain is cached
        try:
            got: str | None = parse_email(value)
        except InvalidField:
            got = None
        assert got == expected


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("+1 415 555 2671", None, "+14155552671"),
        ("+1 (415) 555-2671", "DE", "+14155552671"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("030 1234567", "DE", "+49301234567"),
        ("0049 30 1234567", "DE", "+49301234567"),
        ("011 49 30 1234567", "US", "+49301234567"),
        (4155552671, "US", "+14155552671"),
    ],
)
def test_parse_phone_to_e164(value: object, region: str | None, expected: str) -> None:
    assert parse_phone(str(value), region) == expected


@pytest.mark.parametrize(
    ("value", "region", "reason"),
    [
        (
            "(415) 555-2671",
            None,
            "'(415) 555-2671' has no country code (+…) and directory.default_region is not set",
        ),
        ("12", "US", "'12' is not a valid phone number"),
        ("+1 555", None, "'+1 555' is not a valid phone number"),
        ("call me", "US", "'call me' is not a phone number"),
        (
            "0049 30 1234567",
            None,
            "'0049 30 1234567' has no country code (+…) and directory.default_region is not set",
        ),
        ("+44 20 7946 09589999", None, "'+44 20 7946 09589999' is not a valid phone number"),
    ],
)
def test_parse_phone_rejects(value: str, region: str | None, reason: str) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_phone(value, region)
    assert (caught.value.field, caught.value.reason) == ("phone", reason)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Europe/Berlin", "Europe/Berlin"), ("europe/berlin", "Europe/Berlin"), ("UTC", "UTC")],
)
def test_parse_timezone(value: str, expected: str) -> None:
    assert parse_timezone(value) == expected


@pytest.mark.parametrize("value", ["Mars/Olympus", "CEST", "+02:00"])
def test_parse_timezone_rejects(value: str) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_timezone(value)
    assert caught.value.reason == f"{value!r} is not an IANA time zone (such as Europe/Berlin)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        ("", True),
        (None, True),
        (" no ", False),
        ("false", False),
        ("0", False),
        ("NO", False),
        (True, True),
        (False, False),
        (0, False),
        (1, True),
    ],
)
def test_parse_active(value: object, expected: bool) -> None:
    assert parse_active(value) is expected


@pytest.mark.parametrize("value", ["maybe", "2", "-"])
def test_parse_active_rejects(value: str) -> None:
    with pytest.raises(InvalidField, match=r"is not one of true/false, yes/no, 1/0"):
        parse_active(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a;b", ("a", "b")),
        (" a ; ;b;", ("a", "b")),
        ("Net;net;NET", ("Net",)),
        (["x", " y "], ("x", "y")),
        ("", ()),
        (None, ()),
    ],
)
def test_parse_groups(value: object, expected: tuple[str, ...]) -> None:
    assert parse_groups(value) == expected


def test_validate_row_full() -> None:
    row = {
        "id": " alice ",
        "name": "Alice  Archer",
        "email": "Alice@Example.com",
        "phone": "(415) 555-2671",
        "department": "Finance",
        "site": "Berlin",
        "title": "Finance Manager",
        "manager": "Boss@Example.com",
        "groups": "oncall;Managers",
        "timezone": "europe/berlin",
        "slack_user_id": "u0alice1",
        "active": "no",
    }
    assert validate_row(row, "US") == PersonRecord(
        id="alice",
        name="Alice Archer",
        email="alice@example.com",
        phone="+14155552671",
        department="Finance",
        site="Berlin",
        title="Finance Manager",
        manager="boss@example.com",
        groups=("oncall", "Managers"),
        timezone="Europe/Berlin",
        slack_user_id="U0ALICE1",
        active=False,
    )


def test_validate_row_id_defaults_to_lower_case_email() -> None:
    assert validate_row({"email": "Bob@Example.com"}).id == "bob@example.com"


@pytest.mark.parametrize(
    ("row", "problems"),
    [
        ({"name": "Nobody"}, ["id: a row needs an id or an email"]),
        ({"id": " ", "email": ""}, ["id: a row needs an id or an email"]),
        (
            {"email": "bob@@example", "phone": "12", "timezone": "Mars/Olympus"},
            [
                "email: 'bob@@example' is not a valid email address "
                "(the part after the @-sign contains invalid characters: '@')",
                "phone: '12' has no country code (+…) and directory.default_region is not set",
                "timezone: 'Mars/Olympus' is not an IANA time zone (such as Europe/Berlin)",
            ],
        ),
        ({"id": "x" * 201}, ["id: longer than 200 characters"]),
        (
            {"id": "a", "slack_user_id": "alice"},
            ["slack_user_id: 'alice' is not a Slack user id (such as U024BE7LH)"],
        ),
        ({"id": "a", "name": {"first": "A"}}, ["name: expected text, got dict"]),
        ({"id": "a", "groups": 5}, ["groups: expected text or a list, got int"]),
        ({"id": "a", "active": "maybe"}, ["active: 'maybe' is not one of true/false, yes/no, 1/0"]),
    ],
)
def test_validate_row_reports_every_problem(row: dict[str, object], problems: list[str]) -> None:
    with pytest.raises(InvalidRow) as caught:
        validate_row(row)
    assert [str(p) for p in caught.value.problems] == problems


def _errors(text: str, name: str = "people.csv", region: str | None = "US") -> list[str]:
    return [str(e) for e in parse_people(text.encode(), name, region).errors]


def test_fixture_csv_loads() -> None:
    parsed = read_people(DATA / "people.csv", "US")
    assert parsed.errors == []
    assert [p.id for p in parsed.people] == ["alice", "bob", "carol", "dan", "erin", "frank@example.com"]
    assert parsed.people[-1].active is False
    assert parsed.people[0].groups == ("oncall-network", "Managers")


def test_fixture_json_loads() -> None:
    parsed = read_people(DATA / "people.json", "US")
    assert parsed.errors == []
    assert [(p.id, p.groups, p.active) for p in parsed.people] == [
        ("alice", ("oncall-network", "Managers"), True),
        ("bob", ("oncall-network",), True),
        ("frank@example.com", (), False),
    ]


def test_csv_bad_rows_are_reported_by_line_and_skipped() -> None:
    text = (
        "id,email,phone,timezone\n"  # line 1
        "a,a@example.com,,\n"  # 2
        "b,bob@@example,,\n"  # 3
        "\n"  # 4: blank lines are skipped
        'c,"c@example.com",+1 555,\n'  # 5
        'd,d@example.com,,"Europe/\n'  # 6: a quoted field over two lines
        'Berlin"\n'  # 7
        "e,e@example.com,,Mars/Olympus\n"  # 8
        "f,f@example.com,,,extra\n"  # 9
        ",,,\n"  # 10: an empty row is skipped
        ",,+1 415 555 2671,\n"  # 11
    )
    parsed = parse_people(text.encode(), "people.csv", "US")
    assert [p.id for p in parsed.people] == ["a"]
    assert [str(e) for e in parsed.errors] == [
        "line 3: email: 'bob@@example' is not a valid email address "
        "(the part after the @-sign contains invalid characters: '@')",
        "line 5: phone: '+1 555' is not a valid phone number",
        "line 6: timezone: 'Europe/ Berlin' is not an IANA time zone (such as Europe/Berlin)",
        "line 8: timezone: 'Mars/Olympus' is not an IANA time zone (such as Europe/Berlin)",
        "line 9: 5 values but the header has 4 columns",
        "line 11: id: a row needs an id or an email",
    ]
    assert parsed.rejected == 6
    assert parsed.rejected_ids == {"b", "c", "d", "e", "f"}


def test_duplicate_ids_and_emails_name_the_first_line() -> None:
    text = (
        "id,email\n"
        "alice,alice@example.com\n"  # 2
        "bob,bob@example.com\n"  # 3
        "alice,other@example.com\n"  # 4
        "carol,BOB@example.com\n"  # 5
        ",alice@example.com\n"  # 6
    )
    assert _errors(text) == [
        "line 4: id: 'alice' already appears on line 2",
        "line 5: email: 'bob@example.com' already appears on line 3",
        "line 6: email: 'alice@example.com' already appears on line 2",
    ]


def test_header_is_case_insensitive_and_short_rows_are_padded() -> None:
    parsed = parse_people(b" ID , Email ,Name\nalice,alice@example.com\n", "p.csv")
    assert parsed.people == [PersonRecord(id="alice", email="alice@example.com")]


def test_byte_order_mark_is_dropped() -> None:
    parsed = parse_people("\ufeffemail\nalice@example.com\n".encode(), "p.csv")
    assert [p.id for p in parsed.people] == ["alice@example.com"]


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"", "p.csv", "p.csv: empty"),
        (b"\xef\xbb\xbf \n\n", "p.csv", "p.csv: empty"),
        (b"id,email\n", "p.csv", "p.csv: no people after the header"),
        (b"[]", "p.json", "p.json: no people"),
        (
            b"id,email,shoe_size,Colour\n",
            "p.csv",
            "p.csv: unknown columns 'colour', 'shoe_size' (expected id, name, email, phone, department, "
            "site, title, manager, groups, timezone, slack_user_id, language, active)",
        ),
        (b"name,phone\nA,+14155552671\n", "p.csv", "p.csv: needs an 'id' or an 'email' column"),
        (b"id,email,ID\n", "p.csv", "p.csv: column 'id' appears more than once"),
        (
            b"id,name\nalice,Ren\xe9\nbob,Bob\n",
            "p.csv",
            "p.csv: line 2: not valid UTF-8 (byte 0xe9); save the file as UTF-8",
        ),
        (
            b'[{"id": "a",}]',
            "p.json",
            "p.json: not valid JSON: line 1 column 13: Expecting property name enclosed in double quotes",
        ),
        (b'{"users": []}', "p.json", 'p.json: expected a list of people or {"people": [...]}'),
        (
            b'[{"id": "a", "shoe": 1}]',
            "p.json",
            "p.json: unknown column 'shoe' (expected id, name, email, "
            "phone, department, site, title, manager, groups, timezone, slack_user_id, language, active)",
        ),
        (b'[{"name": "a"}]', "p.json", "p.json: needs an 'id' or an 'email' column"),
    ],
)
def test_unusable_files(data: bytes, name: str, message: str) -> None:
    with pytest.raises(DirectoryFileError) as caught:
        parse_people(data, name, "US")
    assert str(caught.value) == message


def test_json_rows_are_reported_by_index() -> None:
    data = (
        b'[{"id": "a", "email": "a@example.com"}, "bob", {"id": "c", "phone": 5}, {"id": "d", "groups": [1]}]'
    )
    assert _errors(data.decode(), "p.json", None) == [
        "item 1: expected an object",
        "item 2: phone: '5' has no country code (+…) and directory.default_region is not set",
        "item 3: groups: expected group names as text, got int",
    ]


def test_json_detected_by_content_whatever_the_extension() -> None:
    parsed = parse_people(b'  [{"email": "a@example.com"}]', "people.txt")
    assert [p.id for p in parsed.people] == ["a@example.com"]


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DirectoryFileError, match=r"^.*nope\.csv: file not found$"):
        read_people(tmp_path / "nope.csv")
    with pytest.raises(DirectoryFileError, match=r": is a directory$"):
        read_people(tmp_path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("de", "de"),
        ("pt-BR", "pt-BR"),
        ("pt_br", "pt-BR"),  # POSIX and Slack spelling
        ("EN-us", "en-US"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("de-CH-1996", "de-CH-1996"),
        ("en-US-x-twain", "en-US-x-twain"),
        ("english", None),  # no language has a subtag of more than 3 letters
        ("d", None),
        ("de-", None),
        ("123", None),
        ("de DE", None),
        ("en-" + "a" * 40, None),
    ],
)
def test_parse_language(value: str, expected: str | None) -> None:
    if expected is not None:
        assert parse_language(value) == expected
    else:
        with pytest.raises(InvalidField) as caught:
            parse_language(value)
        assert caught.value.field == "language"
