"""A critical notice that becomes due while a throttled batch of a large maintenance notice is being
sent goes out next, not after the rest of that batch (bot.engine.urgent). Judged by arrival order at
a real SMTP server, on the injected clock: the pacer's waits move it, so the moment the critical
notice becomes due falls at a known place in the maintenance sends."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_announce_cli import write_directory

from bot import service
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.directory.store import import_file
from bot.engine.dispatcher import Dispatcher
from bot.standins.smtp import SmtpStandIn

RATE = 100  # emails per second: a claim is half a second of sends, 51 emails


async def test_a_critical_notice_due_mid_batch_goes_before_the_rest_of_the_batch(
    db_url: str, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with SmtpStandIn() as smtp:
        settings = load_settings(
            None,
            database={"url": db_url},
            smtp={"host": "127.0.0.1", "port": smtp.port, "security": "none", "rate_per_second": RATE,
                  "from_address": "herald@example.com"},
            quiet_hours={"kinds": []},
            dispatcher={"poll_interval": "0.05s"},
        )  # fmt: skip
        herald = Herald.build(settings, clock=clock)
        try:
            import_file(herald.store, write_directory(tmp_path / "people.csv", 120))
            big = announce(herald, "everyone", "maintenance")
            # Due a tenth of a second (ten maintenance emails) into the first claim of 51.
            urgent = announce(herald, "person:p1@example.com", "critical", start_at=clock.now() + 0.1)
            await run(herald, [big, urgent])
        finally:
            await herald.aclose()
    subjects = [str(message.message["Subject"]) for message in smtp.messages]
    assert len(subjects) == 121
    critical_at = next(i for i, subject in enumerate(subjects) if subject.startswith("[CRITICAL]"))
    # Due after ~10 sends, seen at the next look (every 0.2 s: ~20 sends), plus what is in flight;
    # without the look it waits for the whole claim of 51.
    assert 10 <= critical_at <= 20 + settings.smtp.max_connections < RATE // 2 + 1


def announce(herald: Herald, audience: str, severity: str, start_at: float | None = None) -> str:
    request = service.AnnounceRequest(
        audience=audience,
        channels=("email",),
        severity=severity,
        title=severity,
        body="body",
        start_at=start_at,
    )
    return service.announce(herald, request)


async def run(herald: Herald, ids: list[str]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(Dispatcher(herald, "w1", registered=False).run(stop))
    try:
        async with asyncio.timeout(60):
            while any((service.status(herald, i) or {}).get("state") != "done" for i in ids):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
