"""Daily caps and the warm-up ramp: the cap holds across a dispatcher restart (the counter is in the
database), what does not fit waits for the next UTC day, and the ramp's cap per day since the first
send, as a table over a real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import Peers, claim_due, dispatch_until
from test_recipients_web import rows

from bot import service
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.engine import caps as warmup
from bot.store import Store
from bot.tables import ChannelCounter


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


async def test_daily_cap_holds_across_a_restart(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {peers.smtp.port}\nrate_per_second = 0\ndaily_cap = 3\n'
        '[dispatcher]\npoll_interval = "0.05s"\n[quiet_hours]\nkinds = []\n',
        encoding="utf-8",
    )
    people = tmp_path / "people.csv"
    people.write_text(
        "id,name,email\n" + "".join(f"c{i},C {i},c{i}@example.com\n" for i in range(5)), "utf-8"
    )
    assert (
        await asyncio.to_thread(cli, "directory", "import", str(people), "--config", str(config))
    ).exit_code == 0
    clock = ManualClock(utc("2026-01-15 10:00"))

    herald = Herald.build(load_settings(config), clock=clock)
    request = service.AnnounceRequest("everyone", ("email",), "info", "Capped", "")
    notification_id = await asyncio.to_thread(service.announce, herald, request)
    await dispatch_until(herald, lambda: len(peers.smtp.messages) >= 3)
    assert claim_due(herald) == []  # the day's cap is used up
    await herald.aclose()
    assert len(peers.smtp.messages) == 3

    restarted = Herald.build(load_settings(config), clock=clock)  # a new process: nothing kept in memory
    try:
        assert claim_due(restarted) == []  # the counter is in the database, not in a process
        assert len(peers.smtp.messages) == 3
        status = await asyncio.to_thread(service.status, restarted, notification_id)
        assert status is not None
        assert status["channels"]["email"]["sent"] == 3 and status["channels"]["email"]["queued"] == 2
        assert status["channels"]["email"]["failed"] == 0

        clock.advance(utc("2026-01-16 00:00:01") - clock.now())  # the next UTC day
        await dispatch_until(restarted, lambda: len(peers.smtp.messages) >= 5)
        assert len(peers.smtp.messages) == 5
        assert rows(db_url, "SELECT day, sent FROM channel_counter WHERE sent > 0 ORDER BY day") == [
            ("2026-01-15", 3),
            ("2026-01-16", 2),
        ]
    finally:
        await restarted.aclose()


@pytest.mark.parametrize(
    ("ramp", "first", "today", "expected"),
    [
        ((), None, "2026-01-15", None),
        ((500, 1000), None, "2026-01-15", 500),  # nothing sent yet: today is day 0
        ((500, 1000), "2026-01-15", "2026-01-15", 500),
        ((500, 1000), "2026-01-15", "2026-01-16", 1000),
        ((500, 1000), "2026-01-15", "2026-01-17", None),  # the ramp is over
        ((500, 1000), "2026-01-15", "2026-01-14", 500),  # a clock set back
    ],
)
def test_ramp_cap(ramp: tuple[int, ...], first: str | None, today: str, expected: int | None) -> None:
    assert warmup.ramp_cap(ramp, first, utc(f"{today} 12:00")) == expected


def test_cap_today_counts_days_since_the_first_send(store: Store) -> None:
    with store.session() as session:
        session.add(ChannelCounter(channel="email", day="2026-01-14", sent=0))  # a day of claims given back
        session.add(ChannelCounter(channel="email", day="2026-01-15", sent=40))
        session.commit()
    ramp = (50, 100, 200)
    assert warmup.cap_today(store, "email", utc("2026-01-15 09:00"), 0, ramp) == 50
    assert warmup.cap_today(store, "email", utc("2026-01-16 09:00"), 0, ramp) == 100
    assert warmup.cap_today(store, "email", utc("2026-01-16 09:00"), 80, ramp) == 80  # the smaller cap
    assert warmup.cap_today(store, "email", utc("2026-01-17 09:00"), 0, ramp) == 200
    assert warmup.cap_today(store, "email", utc("2026-01-18 09:00"), 0, ramp) is None
    assert warmup.cap_today(store, "email", utc("2026-01-18 09:00"), 1000, ramp) == 1000
    assert warmup.cap_today(store, "sms", utc("2026-01-18 09:00"), 0, ramp) == 50  # sms never sent: day 0
    assert warmup.schedule(load_settings(None), "email") == ()  # no ramp unless configured
