"""Maintenance silences in the real ``prometheus-alertmanager`` (API v2): ``herald announce --window
--silence`` creates one with the window's matchers and times, ``herald followup --done`` expires it, and
an unreachable Alertmanager never blocks the announcement (the scheduler's pass retries it)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Peers
from sqlalchemy import select
from test_alert_webhooks import eventually, running_alerts
from test_alertmanager_e2e import am_alert, free_port, running_alertmanager
from test_announce_cli import setup
from test_maintenance_http import announce_window, shown

from bot.alerts.escalation import run_due
from bot.alerts.maintenance import iso, parse_moment
from bot.alerts.silences import sync_silences
from bot.alerts.tables import AlertGroup
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.store import open_store
from bot.tables import table_of

GROUP = table_of(AlertGroup)

pytestmark = pytest.mark.slow


def announce(cli, config: str, window: str, silence: str = "service=db,env=prod"):  # type: ignore[no-untyped-def]
    return cli(
        "announce", "--config", config, "--yes", "--json", "--audience", "dept:engineering",
        "--severity", "maintenance", "--title", "DB patching", "--window", window, "--silence", silence,
    )  # fmt: skip


def herald_silences(url: str) -> list[dict[str, Any]]:
    silences = httpx.get(f"{url}/api/v2/silences", timeout=10).json()
    return [s for s in silences if s["createdBy"] == "herald"]


async def test_silence_is_created_with_the_window_and_expired_on_done(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    async with running_alertmanager(tmp_path, "http://127.0.0.1:9") as am:
        config = setup(cli, peers, db_url, tmp_path, extra=f'[alertmanager]\nurl = "{am.url}/"\n')
        now = time.time()
        start, end = iso(now - 60), iso(now + 3600)
        result = announce(cli, config, f"{start}..{end}")
        assert result.exit_code == 0, result.stderr
        nid = json.loads(result.stdout)["id"]

        (silence,) = herald_silences(am.url)
        assert sorted(silence["matchers"], key=lambda m: m["name"]) == [
            {"name": "env", "value": "prod", "isRegex": False, "isEqual": True},
            {"name": "service", "value": "db", "isRegex": False, "isEqual": True},
        ]
        starts_at = parse_moment(silence["startsAt"].replace("Z", "+00:00"), 0)
        assert parse_moment(start, 0) <= starts_at <= time.time()  # a past start: Alertmanager says now
        assert parse_moment(silence["endsAt"].replace("Z", "+00:00"), 0) == pytest.approx(
            parse_moment(end, 0), abs=1
        )
        assert silence["comment"].startswith("DB patching") and silence["status"]["state"] == "active"
        status = json.loads(cli("status", nid, "--json", "--config", config).stdout)
        assert status["window"]["alertmanager"] == {
            "state": "created",
            "silence_id": silence["id"],
            "error": None,
        }

        done = cli("followup", nid, "--body", "All done", "--done", "--yes", "--config", config)
        assert done.exit_code == 0, done.stderr
        (expired,) = herald_silences(am.url)
        assert expired["id"] == silence["id"] and expired["status"]["state"] == "expired"


async def test_unreachable_alertmanager_never_blocks_and_is_retried(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens here yet
    config = setup(cli, peers, db_url, tmp_path, extra=f'[alertmanager]\nurl = "http://127.0.0.1:{port}"\n')
    now = time.time()
    with caplog.at_level(logging.WARNING, "herald.alerts.silences"):
        result = announce(cli, config, f"{iso(now - 60)}..{iso(now + 3600)}", "service=db")
    assert result.exit_code == 0, result.stderr
    nid = json.loads(result.stdout)["id"]
    assert any("not created, retrying" in r.getMessage() for r in caplog.records)
    status = json.loads(cli("status", nid, "--json", "--config", config).stdout)
    assert status["window"]["alertmanager"]["state"] == "create"
    assert status["window"]["alertmanager"]["error"]

    soon = herald_at(config, time.time())
    try:
        assert sync_silences(soon) == 0  # not due again before [alertmanager] retry_every
    finally:
        soon.store.dispose()

    async with running_alertmanager(tmp_path, "http://127.0.0.1:9") as am:
        herald = herald_at(config, time.time() + 31, am.url)  # Alertmanager answers now, 31 s later
        try:
            run_due(herald)  # the scheduler's pass
        finally:
            herald.store.dispose()
        (silence,) = herald_silences(am.url)
        assert silence["matchers"] == [{"name": "service", "value": "db", "isRegex": False, "isEqual": True}]
    status = json.loads(cli("status", nid, "--json", "--config", config).stdout)
    assert status["window"]["alertmanager"] == {
        "state": "created",
        "silence_id": silence["id"],
        "error": None,
    }


def herald_at(config: str, now: float, url: str | None = None) -> Herald:
    settings = load_settings(Path(config))
    if url is not None:
        settings.alertmanager.url = url
    return Herald.build(settings, clock=ManualClock(now))


async def test_alerts_from_alertmanager_in_the_window_page_from_its_early_end(  # type: ignore[no-untyped-def]
    cli, db_url: str, tmp_path: Path
) -> None:
    async with (
        running_alerts(db_url, tmp_path, ack_within="3s") as h,
        running_alertmanager(tmp_path, h.url) as am,
    ):
        nid = announce_window(cli, h, "service=db")
        await am.post(am_alert("DBDown", team="core", service="db"), am_alert("LinkDown", team="net"))
        await eventually(
            lambda: h.sms_to("alice") != [], timeout=30, what="the page for the non-matching alert"
        )
        await eventually(
            lambda: shown(h, "Silenced by maintenance"), timeout=30, what="the silenced alert in Slack"
        )
        assert all("LinkDown" in sms for sms in h.sms_to("alice"))
        assert silenced_timers(db_url) == [None]  # the silenced critical alert started no escalation clock

        done = cli("followup", nid, "--body", "Done", "--done", "--yes", "--config", str(h.config))
        assert done.exit_code == 0, done.stderr
        await eventually(
            lambda: any("DBDown" in s for s in h.sms_to("alice")), timeout=30, what="the overrun page"
        )
        await eventually(lambda: h.sms_to("bob") != [], timeout=30, what="tier 1, ack_within after the end")
        assert all("DBDown" in sms for sms in h.sms_to("bob"))


def silenced_timers(db_url: str) -> list[float | None]:
    store = open_store(db_url)
    try:
        with store.begin() as connection:
            query = select(GROUP.c.next_escalation_at).where(GROUP.c.silenced_by.is_not(None))
            return list(connection.execute(query).scalars())
    finally:
        store.dispose()
