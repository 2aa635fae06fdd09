"""Maintenance windows end to end: ``herald announce --window --silence`` against a running ``serve``
(its alert routes and tick), alerts posted to ``POST /hooks/alerts``, deliveries observed at the SMTP
and Twilio stand-ins and the alert channel at the Slack stand-in."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from test_alert_webhooks import GENERIC_TOKEN, AlertHarness, eventually, generic, running_alerts

from bot.alerts.maintenance import iso
from bot.store import open_store
from bot.tables import Notification, table_of

NOTIFICATION = table_of(Notification)


async def post_alert(h: AlertHarness, **changes: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {GENERIC_TOKEN}"}
    return await h.http.post(f"{h.url}/hooks/alerts", json=generic(**changes), headers=headers)


def announce_window(cli, h: AlertHarness, silence: str = "service=db") -> str:  # type: ignore[no-untyped-def]
    now = time.time()
    result = cli(
        "announce", "--config", str(h.config), "--yes", "--audience", "group:oncall", "--channels", "email",
        "--severity", "maintenance", "--title", "DB patching", "--body", "Primary restarts",
        "--window", f"{iso(now - 60)}..{iso(now + 3600)}", "--silence", silence,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return str(result.stdout.strip().splitlines()[-1])


def alert_kinds(db_url: str) -> list[str]:
    store = open_store(db_url)
    try:
        with store.begin() as connection:
            query = select(NOTIFICATION.c.kind).where(NOTIFICATION.c.kind != "announcement")
            return [str(kind) for kind in connection.execute(query).scalars()]
    finally:
        store.dispose()


def shown(h: AlertHarness, words: str) -> bool:
    return any(words in json.dumps(m.blocks) for m in h.alert_messages())


async def test_matching_alert_is_silenced_and_a_non_matching_one_pages(  # type: ignore[no-untyped-def]
    cli, db_url: str, tmp_path: Path
) -> None:
    async with running_alerts(db_url, tmp_path) as h:
        nid = announce_window(cli, h, "service=db,env=prod")
        await eventually(lambda: bool(h.mail_to("alice")), timeout=30, what="the maintenance email")
        assert h.mail_to("alice") == ["[MAINTENANCE] DB patching"]

        matching = await post_alert(
            h, summary="Replica lag", labels={"team": "core", "service": "db", "env": "prod"}
        )
        assert matching.status_code == 202, matching.text
        await eventually(
            lambda: shown(h, "Silenced by maintenance"), timeout=30, what="the silenced alert in Slack"
        )
        message = next(m for m in h.alert_messages() if "Replica lag" in m.text)
        assert nid in json.dumps(message.blocks) and "DB patching" in json.dumps(message.blocks)

        other = await post_alert(h, summary="VPN down", labels={"team": "net", "service": "db", "env": "dev"})
        assert other.status_code == 202
        await eventually(
            lambda: bool(h.sms_to("alice")), timeout=30, what="the page for the non-matching alert"
        )
        assert all("VPN down" in sms for sms in h.sms_to("alice"))
        assert alert_kinds(db_url) == ["alert"]  # one page: the silenced alert paged nobody
        assert [s for s in h.mail_to("alice") if "Replica" in s] == []

        status = cli("status", nid, "--json", "--config", str(h.config))
        window = json.loads(status.stdout)["window"]
        assert window["silenced_alerts"] == 1 and window["silence"] == {"service": "db", "env": "prod"}


def mail_of(h: AlertHarness, person: str) -> list[Any]:
    return [m.message for m in h.smtp.messages if f"{person}@example.com" in m.rcpt_tos]


def status_window(cli: Any, h: Any, nid: str) -> str:
    window = json.loads(cli("status", nid, "--json", "--config", str(h.config)).stdout)["window"]
    start, end = (datetime.fromisoformat(window[key].replace("Z", "+00:00")) for key in ("start", "end"))
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"


async def test_done_ends_the_window_early_the_overrun_pages_and_the_all_clear_threads(  # type: ignore[no-untyped-def]
    cli, db_url: str, tmp_path: Path
) -> None:
    async with running_alerts(db_url, tmp_path) as h:
        nid = announce_window(cli, h)
        await eventually(lambda: bool(mail_of(h, "alice")), timeout=30, what="the maintenance email")
        (original,) = mail_of(h, "alice")
        window = status_window(cli, h, nid)
        # The built-in template tells the reader the window (UTC).
        assert f"Window: {window} UTC" in original.get_body(("plain",)).get_content()
        assert (
            await post_alert(h, summary="Replica lag", labels={"team": "core", "service": "db"})
        ).is_success
        await eventually(
            lambda: shown(h, "Silenced by maintenance"), timeout=30, what="the silenced alert in Slack"
        )
        assert h.sms_to("alice") == []

        done = cli(
            "followup", nid, "--body", "Patching finished", "--done", "--yes", "--config", str(h.config)
        )
        assert done.exit_code == 0, done.stderr

        # The scheduler's tick closes the window: the overrun notice, then the page as usual.
        await eventually(
            lambda: any("overran" in m.text for m in h.alert_messages()), timeout=30, what="overrun notice"
        )
        notice = next(m for m in h.alert_messages() if "overran" in m.text)
        assert nid in notice.text and "DB patching" in notice.text
        await eventually(lambda: bool(h.sms_to("alice")), timeout=30, what="the page after the window")
        assert any("Replica lag" in sms for sms in h.sms_to("alice"))
        await eventually(
            lambda: shown(h, "Still firing when maintenance"), timeout=30, what="the alert message updated"
        )

        # Alice is on call, so the page after the window also reaches her by email: wait for the all-clear
        # itself, not for a second mail.
        def all_clears() -> list[Any]:
            return [m for m in mail_of(h, "alice") if "Patching finished" in m.get_body().get_content()]

        await eventually(lambda: bool(all_clears()), timeout=30, what="the all-clear email")
        (all_clear,) = all_clears()
        assert all_clear["Subject"] == "Re: [MAINTENANCE] DB patching"
        assert all_clear["In-Reply-To"] == original["Message-ID"]
        assert all_clear["References"] == original["Message-ID"]
        assert all_clear["Message-ID"] != original["Message-ID"]

        status = json.loads(cli("status", nid, "--json", "--config", str(h.config)).stdout)
        assert status["window"]["ended_early"] is not None and status["window"]["overran"] is True
