"""The dispatcher against real peers on both databases: deadline order, throttles, forecast accuracy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import TWILIO_SID, TWILIO_TOKEN, Peers
from test_announce_cli import write_directory

from bot import service
from bot.app import Herald
from bot.config import load_settings
from bot.directory.store import import_file
from bot.engine.dispatcher import Dispatcher
from bot.standins.smtp import SmtpStandIn
from bot.standins.twilio import TwilioStandIn


@dataclass
class Rig:
    herald: Herald
    smtp: SmtpStandIn
    twilio: TwilioStandIn


@pytest.fixture
async def rig(db_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    async with SmtpStandIn() as smtp, TwilioStandIn(account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN) as tw:

        def build(people: int = 12, **overrides: Any) -> Rig:
            sections: dict[str, Any] = {
                "database": {"url": db_url},
                "smtp": {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "security": "none",
                    "rate_per_second": 0,
                    "from_address": "herald@example.com",
                },
                "twilio": {
                    "account_sid": TWILIO_SID,
                    "auth_token": TWILIO_TOKEN,
                    "from_number": "+15005550006",
                    "api_url": tw.url,
                    "rate_per_second": 0,
                },
                "quiet_hours": {"kinds": []},
                "dispatcher": {"poll_interval": "0.05s"},
            }
            for section, values in overrides.items():
                sections.setdefault(section, {}).update(values)
            herald = Herald.build(load_settings(None, **sections))
            import_file(herald.store, write_directory(tmp_path / "people.csv", people))
            built.append(herald)
            return Rig(herald, smtp, tw)

        built: list[Herald] = []
        yield build
        for herald in built:
            await herald.aclose()


def request(audience: str, severity: str = "maintenance", channels: tuple[str, ...] = ("email",)) -> Any:
    return service.AnnounceRequest(
        audience=audience, channels=channels, severity=severity, title=severity, body="body"
    )


async def run_until_done(herald: Herald, ids: list[str], timeout: float = 30) -> dict[str, dict[str, Any]]:
    stop = asyncio.Event()
    dispatcher = Dispatcher(herald, "test-worker", registered=False)
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        async with asyncio.timeout(timeout):
            while True:
                states = {i: service.status(herald, i) for i in ids}
                if all(s is not None and s["state"] == "done" for s in states.values()):
                    return {i: s for i, s in states.items() if s is not None}
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


def emailed(herald: Herald, notification: str, state: str) -> int:
    """How many of ``notification``'s email deliveries are in ``state`` (sent, cancelled, ...)."""
    status = service.status(herald, notification)
    assert status is not None
    return int(status["channels"]["email"][state])


async def test_critical_notice_overtakes_a_large_maintenance_notice(rig: Any) -> None:
    r: Rig = rig(people=80, smtp={"rate_per_second": 20})
    big = service.announce(r.herald, request("everyone"))
    stop = asyncio.Event()
    task = asyncio.create_task(Dispatcher(r.herald, "w1", registered=False).run(stop))
    async with asyncio.timeout(20):  # under way: a second's worth sent, about 60 still queued
        while emailed(r.herald, big, "sent") < 20:
            await asyncio.sleep(0.02)
    before = len(r.smtp.messages)
    urgent = service.announce(r.herald, request("person:p1@example.com,p2@example.com", "critical"))
    try:
        async with asyncio.timeout(20):
            while (service.status(r.herald, big) or {}).get("state") != "done":
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    critical = service.status(r.herald, urgent)
    assert critical is not None and critical["channels"]["email"]["sent"] == 2
    # Judged by arrival order, not the wall clock: after the critical notice was created, only what
    # the dispatcher had already claimed (a claim at 20/s is 11) and had in flight may arrive first;
    # the ~50 maintenance mails still queued all come after it.
    subjects = [str(m.message["Subject"]) for m in r.smtp.messages]
    urgent_at = [i for i, subject in enumerate(subjects) if subject.startswith("[CRITICAL]")]
    assert len(urgent_at) == 2 and len(subjects) == 82
    ahead = urgent_at[-1] - before - 1  # maintenance mails that arrived between creation and the last
    assert ahead <= 11 + r.herald.settings.smtp.max_connections
    assert len(subjects) - urgent_at[-1] - 1 >= 30


async def test_achieved_rate_never_exceeds_the_throttle(peers: Peers, db_url: str, tmp_path: Path) -> None:
    # The Twilio stand-in runs on its own loop in a thread, so its clock is not held up by ours.
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url), encoding="utf-8")
    herald = Herald.build(
        load_settings(config, twilio={"rate_per_second": 10}, dispatcher={"poll_interval": 0.05})
    )
    try:
        import_file(herald.store, write_directory(tmp_path / "people.csv", 40))
        notification = service.announce(herald, request("everyone", "critical", ("sms",)))
        await run_until_done(herald, [notification])
    finally:
        await herald.aclose()
    arrivals = sorted(m.created_at.timestamp() for m in peers.twilio.messages)
    assert len(arrivals) == 30  # every 4th person has no phone
    # The first request also opens the connection (it arrives late, next to the second): judge the
    # rest. Sends start 0.1 s apart; a slot used up to 0.1 s late and loopback jitter under load may
    # let one or two more arrive inside some 1-second window, never a burst.
    steady = arrivals[1:]
    assert max(sum(1 for t in steady if start <= t < start + 1.0) for start in steady) <= 12
    overall = (len(steady) - 1) / (steady[-1] - steady[0])
    assert overall <= 10.5


async def test_forecast_error_against_actual_completion(rig: Any) -> None:
    r: Rig = rig(people=60, smtp={"rate_per_second": 25})
    ask = request("everyone")
    predicted = service.preview(r.herald, ask).forecast.seconds
    notification = service.announce(r.herald, ask)
    final = (await run_until_done(r.herald, [notification]))[notification]
    actual = final["sla"]["last_delivery_s"]
    error = abs(actual - predicted) / predicted
    print(f"forecast {predicted:.2f}s, actual {actual:.2f}s, error {error:.1%}")
    assert predicted == pytest.approx(59 / 25, rel=0.01)
    # The throttle makes the forecast a floor: the fan-out can never beat it. How close it comes is
    # a figure for bench/ (about 5-20 % on an idle machine); a loaded CI machine only makes it later,
    # so the upper bound here is generous and catches a forecast off by a factor, not by load.
    assert actual >= predicted * 0.95
    assert actual < predicted * 5


async def test_cancel_stops_what_has_not_been_sent(rig: Any) -> None:
    r: Rig = rig(people=40, smtp={"rate_per_second": 10})
    notification = service.announce(r.herald, request("everyone"))
    stop = asyncio.Event()
    task = asyncio.create_task(Dispatcher(r.herald, "w1", registered=False).run(stop))
    async with asyncio.timeout(10):
        while emailed(r.herald, notification, "sent") < 3:
            await asyncio.sleep(0.02)
    sent_before = emailed(r.herald, notification, "sent")
    cancelled = service.cancel(r.herald, notification, "tester")
    async with asyncio.timeout(10):  # the running dispatcher gives back what it claimed, as cancelled
        while emailed(r.herald, notification, "sent") + emailed(r.herald, notification, "cancelled") < 40:
            await asyncio.sleep(0.02)
    stop.set()
    await task
    final = service.status(r.herald, notification)
    assert final is not None
    assert final["state"] == "cancelled"
    email = final["channels"]["email"]
    assert email["cancelled"] >= cancelled  # plus the claimed ones given back as cancelled
    assert cancelled >= 20
    assert email["sent"] + email["cancelled"] == 40
    # Only what was already claimed (about a second's worth at 10/s) may still go out.
    assert email["sent"] <= sent_before + 11
    assert len(r.smtp.messages) == email["sent"]
