"""The typed ``/announce`` form and the modal's fields, parsed by pure functions (tables)."""

from __future__ import annotations

from typing import Any

import pytest
from slack_signing import modal_values

from bot.slack.commands import (
    USAGE,
    AnnounceCommand,
    CancelCommand,
    HelpCommand,
    ListCommand,
    ModalCommand,
    ModalErrors,
    ParseError,
    StatusCommand,
    parse_announce_command,
    parse_channels,
    parse_modal_submission,
    split_title_body,
    strip_mention_labels,
)

NOW = 1_767_225_600.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ModalCommand()),
        ("   ", ModalCommand()),
        ("help", HelpCommand()),
        ("HELP", HelpCommand()),
        ("list", ListCommand()),
        ("status n3k9x2", StatusCommand("n3k9x2")),
        ("cancel  n3k9x2 ", CancelCommand("n3k9x2")),
        (
            "maintenance to site:berlin via email,sms: Patch Tuesday | Servers reboot at 22:00 CET",
            AnnounceCommand(
                "maintenance", "site:berlin", ("email", "sms"), "Patch Tuesday", "Servers reboot at 22:00 CET"
            ),
        ),
        (
            "Critical TO dept:finance,hr site:berlin -group:contractors VIA SMS : VPN down|Use the backup",
            AnnounceCommand(
                "critical",
                "dept:finance,hr site:berlin -group:contractors",
                ("sms",),
                "VPN down",
                "Use the backup",
            ),
        ),
        (
            "info to <@U123|alice> <!subteam^S9|@oncall> via email and sms: Hi",
            AnnounceCommand("info", "<@U123> <!subteam^S9>", ("email", "sms"), "Hi", ""),
        ),
        (
            "info to everyone via email: Lunch | Tom &amp; Jerry &lt;3 | second bar",
            AnnounceCommand("info", "everyone", ("email",), "Lunch", "Tom & Jerry <3 | second bar"),
        ),
        (
            "info to everyone via email, email: <https://x.example/a|link> title | body",
            AnnounceCommand("info", "everyone", ("email",), "<https://x.example/a|link> title", "body"),
        ),
        (
            "outage to everyone via email: Mail down | Line one\nLine two",
            AnnounceCommand("outage", "everyone", ("email",), "Mail down", "Line one\nLine two"),
        ),
    ],
)
def test_parses(text: str, expected: Any) -> None:
    assert parse_announce_command(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("loud to everyone via email: Hi", "unknown severity 'loud'"),
        ("info everyone via email: Hi", "missing 'to <audience>'"),
        ("info to everyone email: Hi", "missing 'via <channels>'"),
        ("info to everyone via email Hi", "missing ':' before the title"),
        ("info to everyone via fax: Hi", "unknown channel 'fax'"),
        ("info to everyone via email:  | body only", "the title is empty"),
        ("status", "'status' needs a notification id"),
        ("cancel a b", "'cancel' needs a notification id"),
        ("list everything", "missing 'to <audience>'"),
    ],
)
def test_errors_name_the_problem_and_show_the_usage(text: str, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_announce_command(text)
    assert caught.value.reason.startswith(reason)
    assert str(caught.value).endswith(f"usage: {USAGE}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("email", ("email",)),
        ("SMS", ("sms",)),
        ("email,sms", ("email", "sms")),
        ("sms, email", ("sms", "email")),
        ("email and sms", ("email", "sms")),
        ("email+sms+email", ("email", "sms")),
    ],
)
def test_channels(text: str, expected: tuple[str, ...]) -> None:
    assert parse_channels(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Title | Body", ("Title", "Body")),
        ("Title", ("Title", "")),
        ("A <b|c> | d", ("A <b|c>", "d")),
        ("a | b | c", ("a", "b | c")),
    ],
)
def test_title_body(text: str, expected: tuple[str, str]) -> None:
    assert split_title_body(text) == expected


def test_mention_labels_are_dropped_but_links_kept() -> None:
    text = "<@U1|al> <#C1|general> <!subteam^S1|@ops> <https://x|y>"
    assert strip_mention_labels(text) == "<@U1> <#C1> <!subteam^S1> <https://x|y>"


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        (
            modal_values(),
            {
                "audience": "who should hear this? e.g. site:berlin or everyone",
                "channels": "pick at least one channel",
                "severity": "pick a severity",
                "title": "a title is needed",
            },
        ),
        (
            modal_values("everyone", ("email",), "info", "Hi", start_at=int(NOW) - 3600),
            {"start_at": "this time has passed; pick a later one or clear it to send now"},
        ),
        (modal_values("everyone", ("pager",), "info", "Hi"), {"channels": "unknown channel 'pager'"}),
    ],
)
def test_modal_errors_by_field(values: dict[str, Any], errors: dict[str, str]) -> None:
    with pytest.raises(ModalErrors) as caught:
        parse_modal_submission(values, NOW)
    assert caught.value.errors == errors


@pytest.mark.parametrize(
    ("start_at", "expected"),
    [(None, None), (int(NOW) - 30, None), (int(NOW) + 600, NOW + 600)],
)
def test_modal_reads_fields_and_schedule(start_at: int | None, expected: float | None) -> None:
    values = modal_values(
        "<@U1|al> site:berlin", ("email", "sms"), "security", " Rotate keys ", "Today", start_at
    )
    submission = parse_modal_submission(values, NOW)
    assert submission.command == AnnounceCommand(
        "security", "<@U1> site:berlin", ("email", "sms"), "Rotate keys", "Today"
    )
    assert submission.start_at == expected


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("no one matches 'title:Manager'", "audience"),
        ("audience: at 4: expected a value after ':'", "audience"),
        ("unknown severity 'x' (expected one of critical, ...)", "severity"),
        ("the sms channel is not configured", "channels"),
        ("the title is empty", "title"),
        ("something else", "audience"),
    ],
)
def test_service_errors_land_under_the_right_modal_field(message: str, field: str) -> None:
    from bot.service import AnnounceError
    from bot.slack.flows import field_of

    assert field_of(AnnounceError(message)) == field
