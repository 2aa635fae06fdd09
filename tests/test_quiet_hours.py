"""Quiet hours: the pure rule as a table, then the ledger and the dispatcher on a driven clock
(``ManualClock``) delivering through the SMTP stand-in: deferred at night in each person's timezone,
sent when their window ends, in deadline order; urgent kinds and tight deadlines go at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import Peers, claim_due, dispatch_until
from test_recipients_web import rows

from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.directory.audience import parse_audience
from bot.directory.audience_sql import audience_condition
from bot.engine.create import NewNotification, ensure_notification, new_notification_id
from bot.recipients.quiet_hours import QuietWindow, due_at, parse_clock, quiet_until
from bot.recipients.rules import delivery_rules
from bot.recipients.tables import PersonSettings

BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = QuietWindow.parse("22:00", "07:00")


def at(text: str, tz: ZoneInfo = BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


@pytest.mark.parametrize(
    ("now", "window", "expected"),
    [
        ("2026-01-15 23:00", NIGHT, "2026-01-16 07:00"),
        ("2026-01-15 22:00", NIGHT, "2026-01-16 07:00"),
        ("2026-01-16 03:10", NIGHT, "2026-01-16 07:00"),
        ("2026-01-16 06:59", NIGHT, "2026-01-16 07:00"),
        ("2026-01-16 07:00", NIGHT, None),
        ("2026-01-16 12:00", NIGHT, None),
        ("2026-01-16 21:59", NIGHT, None),
        ("2026-01-16 10:00", QuietWindow.parse("09:00", "17:00"), "2026-01-16 17:00"),
        ("2026-01-16 08:00", QuietWindow.parse("09:00", "17:00"), None),
        ("2026-01-16 10:00", QuietWindow.parse("10:00", "10:00"), None),  # empty window
        # spring forward: 02:30 does not exist on 2026-03-29 in Berlin; the end moves to 03:30 CEST
        ("2026-03-28 23:00", QuietWindow.parse("22:00", "02:30"), "2026-03-29 03:30"),
        # fall back: 07:00 on 2026-10-25 is 06:00 UTC (CET again)
        ("2026-10-25 01:00", NIGHT, "2026-10-25 07:00"),
    ],
)
def test_quiet_until(now: str, window: QuietWindow, expected: str | None) -> None:
    until = quiet_until(at(now), BERLIN, window)
    assert until == (at(expected) if expected else None)


@pytest.mark.parametrize(
    ("kind", "deadline_h", "window", "expected"),
    [
        ("info", 24, NIGHT, "2026-01-16 07:00"),
        ("maintenance", 4, NIGHT, "2026-01-15 23:00"),  # 07:00 would miss the deadline: at once
        ("maintenance", 8, NIGHT, "2026-01-16 07:00"),  # exactly at the deadline is in time
        ("critical", 24, NIGHT, "2026-01-15 23:00"),  # not a quiet kind
        ("info", 24, None, "2026-01-15 23:00"),  # quiet hours off for the person
    ],
)
def test_due_at(kind: str, deadline_h: int, window: QuietWindow | None, expected: str) -> None:
    start = at("2026-01-15 23:00")
    assert due_at(start, start + deadline_h * 3600, kind, {"info", "maintenance"}, BERLIN, window) == at(
        expected
    )


@pytest.mark.parametrize("text", ["7:00", "24:00", "07:60", "0700", "", "noon"])
def test_clock_times_are_strict(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_clock(text)


def write_config(peers: Peers, db_url: str, tmp_path: Path) -> Path:
    config = tmp_path / "herald.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {peers.smtp.port}\nrate_per_second = 0\nmax_connections = 1\n'
        '[dispatcher]\npoll_interval = "0.05s"\n'
        '[quiet_hours]\nstart = "22:00"\nend = "07:00"\nkinds = ["maintenance", "info", "newsletter"]\n'
        '[sla.newsletter]\ndeliver_within = "30h"\n',
        encoding="utf-8",
    )
    return config


PEOPLE = """id,name,email,timezone
berlin,Berlin Person,berlin@example.com,Europe/Berlin
newyork,New York Person,newyork@example.com,America/New_York
nightowl,Night Owl,nightowl@example.com,Europe/Berlin
early,Early Bird,early@example.com,Europe/Berlin
nowhere,No Zone,nowhere@example.com,
"""


def create(herald: Herald, severity: str, title: str) -> str:
    settings, now = herald.settings, herald.clock.now()
    new = NewNotification(
        id=new_notification_id(),
        kind="announcement",
        severity=severity,
        title=title,
        body="",
        audience="everyone",
        channels=("email",),
        created_by="test",
        created_at=now,
        start_at=now,
        deadline=now + settings.sla_for(severity).deliver_within,
    )
    condition = audience_condition(parse_audience("everyone"))
    ensure_notification(herald.store, new, condition, delivery_rules(settings))
    return new.id


async def test_night_deliveries_wait_for_each_persons_morning(
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    config = write_config(peers, db_url, tmp_path)
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE, encoding="utf-8")
    assert (
        await asyncio.to_thread(cli, "directory", "import", str(people), "--config", str(config))
    ).exit_code == 0
    clock = ManualClock(at("2026-01-15 23:00"))  # 22:00 UTC, 17:00 in New York
    herald = Herald.build(load_settings(config), clock=clock)
    with herald.store.session() as session:
        session.add(PersonSettings(person_id="nightowl", quiet_mode="off"))
        session.add(
            PersonSettings(person_id="early", quiet_mode="custom", quiet_start="21:00", quiet_end="05:30")
        )
        session.commit()

    newsletter = create(herald, "newsletter", "Newsletter")  # deadline +30h, created first
    info = create(herald, "info", "Info")  # deadline +24h: goes first in the morning
    maintenance = create(herald, "maintenance", "Tonight")  # deadline +4h: 07:00 is too late
    critical = create(herald, "critical", "Down")
    state = {
        (n, p): (s, r)
        for n, p, s, r in rows(db_url, "SELECT notification_id, person_id, state, reason FROM delivery")
    }
    for notification in (newsletter, info):
        assert state[(notification, "berlin")] == ("deferred", "quiet_hours")
        assert state[(notification, "early")] == ("deferred", "quiet_hours")
        assert state[(notification, "nowhere")] == ("deferred", "quiet_hours")  # UTC by default
        assert state[(notification, "newyork")] == ("queued", None)
        assert state[(notification, "nightowl")] == ("queued", None)
    assert {state[(maintenance, p)] for p in ("berlin", "early", "nowhere")} == {("queued", None)}
    assert {state[(critical, p)] for p in ("berlin", "early", "nowhere")} == {("queued", None)}

    def sent_to(address: str) -> list[str]:
        return [m.message["Subject"] for m in peers.smtp.messages if m.rcpt_tos == [address]]

    try:
        await dispatch_until(herald, lambda: len(peers.smtp.messages) >= 4 * 2 + 3 * 2)  # at once: 8 + 6
        assert sorted(sent_to("berlin@example.com")) == ["[CRITICAL] Down", "[MAINTENANCE] Tonight"]
        assert len(sent_to("newyork@example.com")) == 4 and len(sent_to("nightowl@example.com")) == 4
        assert claim_due(herald) == []  # the clock has not moved: nothing deferred is due yet
        assert len(peers.smtp.messages) == 14  # nothing deferred went early

        clock.advance(at("2026-01-16 05:30") - clock.now())  # early's own window ends
        await dispatch_until(herald, lambda: len(sent_to("early@example.com")) >= 4)
        assert sent_to("early@example.com")[2:] == [
            "[INFO] Info",
            "[NEWSLETTER] Newsletter",
        ]  # deadline order
        assert len(sent_to("berlin@example.com")) == 2

        clock.advance(at("2026-01-16 07:00") - clock.now())  # 06:00 UTC: Berlin's morning
        await dispatch_until(herald, lambda: len(sent_to("berlin@example.com")) >= 4)
        assert sent_to("berlin@example.com")[2:] == ["[INFO] Info", "[NEWSLETTER] Newsletter"]
        assert len(sent_to("nowhere@example.com")) == 2

        clock.advance(at("2026-01-16 07:00", UTC) - clock.now())  # UTC's morning
        await dispatch_until(herald, lambda: len(sent_to("nowhere@example.com")) >= 4)
    finally:
        await herald.aclose()
    assert rows(db_url, "SELECT count(*) FROM delivery WHERE state <> 'sent'")[0][0] == 0
