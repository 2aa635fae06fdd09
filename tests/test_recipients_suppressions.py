"""The suppression list end to end: a hard bounce (550 5.1.1 from a real SMTP server) suppresses the
address and the next announcement skips it; ``herald suppressions list|remove``; repeated soft
failures suppress too; opted-out people are counted as such in reach, never as failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Peers
from test_announce_cli import setup
from test_recipients_web import announce_json, deliveries, rows

from bot.config import load_settings
from bot.directory.audience import parse_audience
from bot.directory.reach import reach
from bot.recipients import preferences
from bot.recipients.rules import delivery_rules, opt_out_conditions
from bot.store import open_store


def test_hard_bounce_suppresses_and_the_cli_lists_and_removes_it(
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    peers.smtp.fail("rcpt", "550 5.1.1 <p0@example.com>: user unknown", address="p0@example.com")
    # 1 of 6 failed for good: reach 5/6 < 0.99 misses the SLA (exit 1)
    first = announce_json(cli, config, "dept:engineering", "email", "info", "One", codes=(1,))
    assert first["channels"]["email"]["failed"] == 1
    second = announce_json(cli, config, "dept:engineering", "email", "info", "Two")
    assert second["channels"]["email"]["suppressed"] == 1 and second["channels"]["email"]["failed"] == 0
    assert deliveries(db_url, second["id"])[("p0", "email")] == ("suppressed", "suppressed")
    assert sum(1 for m in peers.smtp.messages if m.rcpt_tos == ["p0@example.com"]) == 0

    listed = cli("suppressions", "list", "--json", "--config", config)
    assert listed.exit_code == 0
    document = json.loads(listed.stdout)
    assert document["count"] == 1
    (entry,) = document["suppressions"]
    assert entry["channel"] == "email" and entry["address"] == "p0@example.com"
    assert entry["reason"].startswith("rejected_recipient: 550 5.1.1") and entry["source"] == "delivery"
    assert entry["created_at"] > 0
    text = cli("suppressions", "list", "--config", config).stdout
    assert "p0@example.com" in text and "1 suppressed address" in text
    assert json.loads(
        cli("suppressions", "list", "--channel", "sms", "--json", "--config", config).stdout
    ) == {
        "count": 0,
        "suppressions": [],
    }

    removed = cli("suppressions", "remove", "email", "P0@Example.com", "--config", config)
    assert removed.exit_code == 0, removed.stderr
    assert "removed p0@example.com" in removed.stdout
    again = cli("suppressions", "remove", "email", "p0@example.com", "--config", config)
    assert again.exit_code == 1 and again.stderr == "herald: p0@example.com is not suppressed on email\n"
    bad = cli("suppressions", "list", "--channel", "fax", "--config", config)
    assert bad.exit_code == 2 and "unknown channel 'fax'" in bad.stderr
    # the server still refuses p0 for good: reach 0/1 misses the SLA (exit 1)
    third = announce_json(cli, config, "person:p0@example.com", "email", "info", "Three", codes=(1,))
    assert third["channels"]["email"]["suppressed"] == 0  # off the list: Herald tries again


def soft_setup(cli, peers: Peers, db_url: str, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    """Every transient failure expires at once (``retry_for = 0s``): one soft failure per notification."""
    config = setup(cli, peers, db_url, tmp_path)
    path = Path(config)
    path.write_text(path.read_text().replace("[smtp]\n", '[smtp]\nretry_for = "0s"\n', 1))
    return config


def test_repeated_soft_failures_suppress_the_address(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = soft_setup(cli, peers, db_url, tmp_path)
    peers.smtp.fail("rcpt", "452 4.2.2 mailbox full", address="p0@example.com")  # every time
    peers.smtp.fail("rcpt", "550 5.7.1 relaying denied for this mailbox", address="p2@example.com")
    peers.smtp.fail("rcpt", "452 4.2.2 mailbox full", address="p4@example.com", times=2)
    audience = "person:p0@example.com,p2@example.com,p4@example.com,p6@example.com"  # p6 always works
    for title in ("one", "two", "three"):
        report = announce_json(cli, config, audience, "email", "info", title, codes=(0, 1))  # 1: SLA missed
        assert report["channels"]["email"]["suppressed"] == 0
    fourth = announce_json(cli, config, audience, "email", "info", "four", codes=(0, 1))
    state = deliveries(db_url, fourth["id"])
    assert state[("p0", "email")] == ("suppressed", "suppressed")  # expired three times in a row
    assert state[("p2", "email")] == ("suppressed", "suppressed")  # refused (5.7.1) three times
    assert state[("p4", "email")][0] == "sent"  # two soft failures, then a success
    assert state[("p6", "email")][0] == "sent"
    found = dict(rows(db_url, "SELECT address, source FROM suppression"))
    assert found == {"p0@example.com": "soft-failures", "p2@example.com": "soft-failures"}


def test_a_channel_outage_suppresses_no_one(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = soft_setup(cli, peers, db_url, tmp_path)
    peers.smtp.fail("rcpt", "451 4.3.0 local problem, try later")  # every recipient, every time
    for title in ("one", "two", "three", "four"):
        report = announce_json(cli, config, "dept:engineering", "email", "info", title, codes=(0, 1))
        assert report["channels"]["email"]["suppressed"] == 0 and report["channels"]["email"]["expired"] == 6
    assert rows(db_url, "SELECT count(*) FROM suppression")[0][0] == 0


def test_reach_counts_opted_out_people_apart(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    settings = load_settings(config)
    rules = delivery_rules(settings)
    store = open_store(db_url)
    try:
        preferences.unsubscribe_email(store, rules, "p0", 1.0)
        for kind, opted in (("info", 1), ("maintenance", 1), ("critical", 0)):
            found = reach(
                store,
                parse_audience("dept:engineering"),
                ("email", "sms"),
                sample=0,
                opted_out=opt_out_conditions(rules, kind, ("email", "sms")),
            )
            assert found.unreachable["email"] == {"no_email": 0, "suppressed": 0, "opted_out": opted}
            assert found.reachable["email"] == 6 - opted
            assert found.unreachable["sms"]["opted_out"] == 0
        plain = reach(store, parse_audience("dept:engineering"), ("email",), sample=0)
        assert plain.unreachable["email"] == {"no_email": 0, "suppressed": 0}
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("prefs", "kind", "channel", "wanted"),
    [
        ({}, "info", "email", True),
        ({("info", "email"): False}, "info", "email", False),
        ({("info", "email"): False}, "info", "sms", True),
        ({("*", "email"): False}, "info", "email", False),
        ({("*", "email"): False}, "newsletter", "email", False),  # a kind added later
        ({("*", "email"): False, ("info", "email"): True}, "info", "email", True),
        ({("*", "email"): False, ("critical", "email"): False}, "critical", "email", True),  # mandatory
    ],
)
def test_wants(prefs: dict[tuple[str, str], bool], kind: str, channel: str, wanted: bool) -> None:
    assert preferences.wants(prefs, kind, channel, {"critical", "outage", "security"}) is wanted
