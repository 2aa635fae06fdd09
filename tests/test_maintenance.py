"""Maintenance windows: ``announce --window/--silence`` through the CLI (bad input exits 2 naming the
option; preview and ``status`` show the window), and the alert side under a ManualClock on both
databases: matching alerts are stored but page nobody and start no escalation clock, a non-matching one
pages, and at the window's end what still fires pages with its ack clock starting at the end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Peers
from sqlalchemy import select
from test_alert_lifecycle import batch, firing, seed
from test_announce_cli import setup

from bot import service
from bot.alerts import escalation, maintenance
from bot.alerts.acks import acknowledge
from bot.alerts.lifecycle import ingest
from bot.alerts.tables import AlertGroup
from bot.alerts.window_end import overrun_text
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.store import Store
from bot.tables import Delivery, Notification, table_of

GROUP = table_of(AlertGroup)
NOTIFICATION = table_of(Notification)
DELIVERY = table_of(Delivery)

START = 1_767_225_600.0  # ManualClock's start: 2026-01-01T00:00:00Z
WINDOW = "2026-01-01T00:10..2026-01-01T01:30"
FUTURE = "2099-01-01T22:00..2099-01-01T23:00"


def announce(cli, config: str, *args: str):  # type: ignore[no-untyped-def]
    base = ["announce", "--config", config, "--yes", "--json", "--audience", "dept:engineering"]
    return cli(*base, "--title", "DB patching", "--body", "Primary restarts", *args)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--severity", "info", "--window", FUTURE], "--window"),
        (["--severity", "info", "--silence", "service=db"], "--silence"),
        (["--severity", "maintenance", "--silence", "service=db"], "--silence: needs --window"),
        (["--severity", "maintenance", "--window", "2099-01-01T23:00..2099-01-01T22:00"], "--window"),
        (["--severity", "maintenance", "--window", "2099-01-01T22:00"], "--window: expected START..END"),
        (["--severity", "maintenance", "--window", "tonight..2099-01-01T22:00"], "--window"),
        (["--severity", "maintenance", "--window", "2020-01-01T22:00..2020-01-01T23:00"], "already ended"),
        (["--severity", "info", "--at", "2020-01-01T09:00"], "--at: 2020-01-01T09:00 has passed"),
        (["--severity", "info", "--at", "+-5m"], "--at"),
        (
            ["--severity", "maintenance", "--window", FUTURE, "--silence", "db"],
            "--silence: expected key=value",
        ),
        (
            [
                "--severity",
                "maintenance",
                "--window",
                FUTURE,
                "--silence",
                "a=1,a=2",
            ],
            "given twice",
        ),
    ],
)
def test_bad_window_options_exit_2_naming_the_option(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path, args: list[str], named: str
) -> None:
    config = setup(cli, peers, db_url, tmp_path)
    result = announce(cli, config, *args)
    assert result.exit_code == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_window_is_stored_previewed_and_shown_by_status(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = setup(cli, peers, db_url, tmp_path)
    window = "2099-12-05T22:00..2099-12-05T23:30+01:00"
    result = cli(
        "announce", "--config", config, "--yes", "--audience", "dept:engineering",
        "--severity", "maintenance", "--title", "DB patching",
        "--window", window, "--silence", "service=db,env=prod",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "window: 2099-12-05T22:00:00Z .. 2099-12-05T22:30:00Z" in result.stdout  # the preview
    assert "silences: service=db,env=prod" in result.stdout
    notification_id = result.stdout.strip().splitlines()[-1]

    status = cli("status", notification_id, "--json", "--config", config)
    assert status.exit_code == 0, status.stderr
    shown = json.loads(status.stdout)["window"]
    assert shown["start"] == "2099-12-05T22:00:00Z" and shown["end"] == "2099-12-05T22:30:00Z"
    assert shown["silence"] == {"service": "db", "env": "prod"}
    assert shown["ended_early"] is None and shown["overran"] is False and shown["silenced_alerts"] == 0
    text = cli("status", notification_id, "--config", config)
    assert "window: 2099-12-05T22:00:00Z .. 2099-12-05T22:30:00Z" in text.stdout
    assert "0 alert(s) silenced" in text.stdout


# -- alerts under a ManualClock ---------------------------------------------------------------------


@pytest.fixture
def herald(store: Store, db_url: str) -> Iterator[Herald]:
    seed(store)
    settings = load_settings(
        None,
        database={"url": db_url},
        twilio={"account_sid": "AC" + "0" * 32, "auth_token": "t", "from_number": "+15005550006"},
        sla={"critical": {"ack_within": "10m", "escalate": ["group:tier1"]}},
        routes=[{"match": {"team": "db"}, "audience": "group:oncall", "channels": ["email", "sms"]}],
        quiet_hours={"kinds": []},
    )
    yield Herald.build(settings, clock=ManualClock(START), store=store)


def windowed(herald: Herald, window: str = WINDOW, silence: str = "service=db,env=prod") -> str:
    now = herald.clock.now()
    request = service.AnnounceRequest(
        audience="group:oncall",
        channels=("email",),
        severity="maintenance",
        title="DB patching",
        body="Primary restarts",
        created_by="slack:UANNOUNCER",
        window=maintenance.window_from_options("maintenance", window, silence, now, ("window", "silence")),
    )
    return service.announce(herald, request)


def advance_to(herald: Herald, at: str) -> None:
    clock = herald.clock
    assert isinstance(clock, ManualClock)
    clock.advance(maintenance.parse_moment(at, 0) - clock.now())


def pages(herald: Herald) -> list[dict[str, Any]]:
    with herald.store.begin() as connection:
        query = select(NOTIFICATION).where(NOTIFICATION.c.kind.in_(("alert", "escalation")))
        return [dict(r) for r in connection.execute(query).mappings()]


def about(herald: Herald, group_id: str) -> list[dict[str, Any]]:
    return [p for p in pages(herald) if json.loads(p["meta"]).get("alert_group") == group_id]


def group_of(herald: Herald, group_id: str) -> dict[str, Any]:
    with herald.store.begin() as connection:
        return dict(connection.execute(select(GROUP).where(GROUP.c.id == group_id)).mappings().one())


def test_matching_alerts_page_nobody_in_the_window_and_page_from_its_end(herald: Herald) -> None:
    nid = windowed(herald)
    before = ingest(herald, batch(firing("DiskFull", team="db", service="db", env="prod")))
    assert len(before.notifications) == 1  # before the window starts: pages as usual

    advance_to(herald, "2026-01-01T00:20")
    db_alert = firing("ReplicaLag", team="db", service="db", env="prod", instance="db1")
    silenced = ingest(herald, batch(db_alert))
    (group_id,) = silenced.groups
    assert silenced.notifications == ()
    row = group_of(herald, group_id)
    assert row["silenced_by"] == nid and row["pending"] is None and row["next_escalation_at"] is None

    other = ingest(herald, batch(firing("ConnectionsHigh", team="db", service="db", env="staging")))
    assert len(other.notifications) == 1  # not every matcher matches: pages

    advance_to(herald, "2026-01-01T01:00")
    escalation.run_due(herald)  # an hour later, inside the window: still nothing, no escalation
    ingest(herald, batch(db_alert))  # re-sent while silenced: owes nothing
    assert about(herald, group_id) == []
    status = service.status(herald, nid)
    assert status is not None and status["window"]["silenced_alerts"] == 1
    assert status["window"]["silenced_groups"] == [group_id]

    advance_to(herald, "2026-01-01T01:31")
    escalation.run_due(herald)  # the window ended with ReplicaLag firing: it overran and pages now
    page = about(herald, group_id)
    assert len(page) == 1 and page[0]["kind"] == "alert"
    row = group_of(herald, group_id)
    end = maintenance.parse_moment("2026-01-01T01:30", 0)
    assert row["next_escalation_at"] == end + 600  # the ack clock starts at the window's end
    status = service.status(herald, nid)
    assert status is not None and status["window"]["overran"] is True

    advance_to(herald, "2026-01-01T01:40")
    escalation.run_due(herald)  # ten minutes after the end, not after the alert came in: tier 1
    assert group_of(herald, group_id)["step"] == 1


def test_a_window_that_ends_clear_does_not_overrun(herald: Herald) -> None:
    nid = windowed(herald)
    advance_to(herald, "2026-01-01T00:20")
    alert = firing("ReplicaLag", team="db", service="db", env="prod")
    ingest(herald, batch(alert))
    ingest(herald, batch(firing("ReplicaLag", status="resolved", team="db", service="db", env="prod")))
    advance_to(herald, "2026-01-01T01:31")
    escalation.run_due(herald)
    assert pages(herald) == []  # silenced, resolved in the window: nobody was paged, no resolution
    status = service.status(herald, nid)
    assert status is not None and status["window"]["overran"] is False


def test_an_alert_acknowledged_in_the_window_does_not_page_at_its_end(herald: Herald) -> None:
    nid = windowed(herald)
    advance_to(herald, "2026-01-01T00:20")
    (group_id,) = ingest(herald, batch(firing("ReplicaLag", team="db", service="db", env="prod"))).groups
    acknowledge(herald, group_id, "slack:UDBA")
    advance_to(herald, "2026-01-01T01:31")
    escalation.run_due(herald)
    assert about(herald, group_id) == []
    status = service.status(herald, nid)
    assert status is not None and status["window"]["overran"] is False


def test_a_non_matching_alert_joining_a_silenced_group_pages(herald: Herald) -> None:
    windowed(herald, silence="service=db")
    advance_to(herald, "2026-01-01T00:20")
    first = ingest(herald, batch(firing("ReplicaLag", team="db", service="db")))
    assert first.notifications == ()
    joined = ingest(herald, batch(firing("ReplicaLag", team="db", service="web")))
    assert joined.groups == first.groups and len(joined.notifications) == 1
    assert group_of(herald, first.groups[0])["silenced_by"] is None


def test_overrun_text_escapes_the_title() -> None:
    text = overrun_text(
        {
            "title": "<!channel> patch",
            "notification_id": "n1",
            "ends_at": START,
            "ended_early_at": None,
            "groups": [("a1", "ReplicaLag")],
        }
    )
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text and "`a1` ReplicaLag" in text


def test_a_bad_alertmanager_url_is_a_configuration_error(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    config.write_text('[alertmanager]\nurl = "alertmanager:9093"\n', encoding="utf-8")
    result = cli("config", "check", "--config", str(config))
    assert result.exit_code == 2
    assert "alertmanager.url" in result.stderr and "http://" in result.stderr
