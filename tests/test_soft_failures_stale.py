"""Issue 16 item 5: soft-bounce scores go stale (Mailman's idea). Transient bounces reported on
``POST /hooks/bounces`` (the ASGI app) for mail sent through the SMTP stand-in count toward the
soft-failure rule only within 30 days: time driven by a ManualClock, both databases."""

from __future__ import annotations

from pathlib import Path

import httpx
from conftest import Peers, dispatch_until
from test_announce_cli import setup
from test_recipients_web import deliveries, rows

from bot import service
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.recipients.bounce_web import bounce_routes
from bot.server import HeraldServer

TOKEN = "stale-bounce-token"
DAY = 86400.0
ADDRESS = "p0@example.com"


async def test_soft_bounces_older_than_30_days_do_not_suppress(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = setup(cli, peers, db_url, tmp_path, people=2, extra=f'[webhooks.bounces]\ntoken = "{TOKEN}"\n')
    clock = ManualClock()
    settings = load_settings(config)
    herald = Herald.build(settings, clock=clock)
    server = HeraldServer(settings, herald=herald, dispatch=False, routes=bounce_routes(herald))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url="http://127.0.0.1")

    async def announce_and_bounce(title: str) -> str:
        request = service.AnnounceRequest(
            audience="everyone", channels=("email",), severity="info", title=title, body="b"
        )
        nid = service.announce(herald, request)
        before = len(peers.smtp.messages)
        if deliveries(db_url, nid)[("p0", "email")][0] == "suppressed":
            return nid
        await dispatch_until(herald, lambda: len(peers.smtp.messages) >= before + 2)
        (message_id,) = [
            m.message["Message-ID"] for m in peers.smtp.messages[before:] if m.rcpt_tos == [ADDRESS]
        ]
        body = {"recipient": ADDRESS, "status": "4.2.2", "action": "failed", "message_id": message_id}
        answer = await http.post("/hooks/bounces", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200 and answer.json()["outcome"] == "soft", answer.text
        return nid

    try:
        await announce_and_bounce("one")  # this one goes stale
        clock.advance(31 * DAY)
        await announce_and_bounce("two")
        await announce_and_bounce("three")
        fourth = await announce_and_bounce("four")  # three soft bounces, but one is 31 days old
        assert deliveries(db_url, fourth)[("p0", "email")][0] == "failed"
        assert rows(db_url, "SELECT count(*) FROM suppression")[0][0] == 0
        clock.advance(DAY)
        fifth = await announce_and_bounce("five")  # the last three, all within 30 days
        assert deliveries(db_url, fifth)[("p0", "email")] == ("suppressed", "suppressed")
        assert deliveries(db_url, fifth)[("p1", "email")][0] == "queued"
        assert rows(db_url, "SELECT address, source FROM suppression") == [(ADDRESS, "soft-failures")]
    finally:
        await http.aclose()
        await server.stop()
