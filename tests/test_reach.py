"""People and reach (SPEC "Truthful outcomes"): ``announce --wait``, ``alert --wait``, ``status`` and
``report`` count people reached / unreached / unreachable, the SLA needs ``reach >= [sla.<severity>]
reach``, and an alert whose route selects nobody reachable goes to the default route's audience and
counts in ``herald_alerts_unrouted_total``. Through the CLI and the webhook, on both databases, with
real SMTP (the stand-in refusing a recipient for good) and the Twilio stand-in."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from conftest import Peers
from test_announce_cli import announce, setup

from bot import service
from bot.alerts.web import alert_routes
from bot.app import Herald
from bot.config import load_settings
from bot.metrics import HeraldMetrics
from bot.slack.status_blocks import progress_message
from bot.web import build_web_app

CRITICAL_TO_ENGINEERING = [
    "--audience",
    "dept:engineering",  # p0, p2, ..., p10: six people, all with an email address
    "--channels",
    "email",
    "--severity",
    "critical",
    "--title",
    "Datacenter power",
]


def test_a_permanent_failure_for_one_of_six_people_misses_a_critical_sla(
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    peers.smtp.fail("rcpt", "550 5.1.1 <p0@example.com>: user unknown", address="p0@example.com")
    result = announce(cli, config, *CRITICAL_TO_ENGINEERING)
    assert result.exit_code == 1, result.stderr  # every delivery is final, but the SLA is missed
    report = json.loads(result.stdout)
    assert report["channels"]["email"]["sent"] == 5 and report["channels"]["email"]["failed"] == 1
    assert report["people"] == {
        "reached": 5,
        "unreached": 1,
        "unreachable": 0,
        "cancelled": 0,
        "confirmed": 0,
    }
    assert report["sla"]["reach"] == pytest.approx(5 / 6)
    assert report["sla"]["reach_target"] == 1.0
    assert report["sla"]["met"] is False

    status = cli("status", report["id"], "--json", "--config", config)
    assert json.loads(status.stdout)["people"] == report["people"]
    text = cli("status", report["id"], "--config", config).stdout
    assert "people: reached 5, unreached 1, unreachable 0; reach 83.3% (target 100%)" in text
    assert "SLA MISSED" in text
    summary = cli("report", "--config", config).stdout
    assert "people: reached 5, unreached 1, unreachable 0; reach 83.3%" in summary
    assert "reach 83.3%, SLA MISSED" in summary

    herald = Herald.build(load_settings(Path(config)))  # the Slack progress message's final line
    try:
        final = service.status(herald, report["id"])
        assert final is not None
        _, blocks = progress_message(final, herald.clock.now())
    finally:
        herald.store.dispose()
    assert ":x: missed · reached 5 of 6 people (83.3%, target 100%)" in json.dumps(blocks, ensure_ascii=False)


def test_the_reach_target_comes_from_the_sla_section(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path, extra="[sla.critical]\nreach = 0.8\n")
    peers.smtp.fail("rcpt", "550 5.1.1 <p0@example.com>: user unknown", address="p0@example.com")
    result = announce(cli, config, *CRITICAL_TO_ENGINEERING)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sla"]["reach_target"] == 0.8
    assert report["sla"]["met"] is True  # 5/6 >= 0.8

    bad = tmp_path / "bad.toml"
    bad.write_text(peers.config(db_url, "[sla.critical]\nreach = 1.5\n"), encoding="utf-8")
    checked = cli("config", "check", "--config", str(bad))
    assert checked.exit_code == 2
    assert "sla.critical.reach" in checked.stderr


def test_people_without_an_address_are_unreachable_not_unreached(
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)  # p3, p7, p11 have no phone
    result = announce(
        cli,
        config,
        "--audience",
        "site:berlin",
        "--channels",
        "sms",
        "--severity",
        "maintenance",
        "--title",
        "x",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["people"]["reached"] == 9
    assert report["people"]["unreached"] == 0
    assert report["people"]["unreachable"] == 3
    assert report["sla"]["reach"] == 1.0 and report["sla"]["reach_target"] == 0.99
    assert report["sla"]["met"] is True


ROUTE_TO_NOBODY = """
[[routes]]
match = { team = "net" }
audience = "group:netops"
channels = ["email"]
"""


def _alert_setup(cli, peers: Peers, db_url: str, tmp_path: Path, groups: str, extra: str = "") -> str:  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url, ROUTE_TO_NOBODY + extra), encoding="utf-8")
    people = tmp_path / "people.csv"
    people.write_text(
        "id,name,email,phone,groups\n"
        f"alice,Alice,alice@example.com,+4915110000001,{groups}\n"
        f"bob,Bob,bob@example.com,+4915110000002,{groups}\n"
        "carol,Carol,carol@example.com,+4915110000003,\n",
        encoding="utf-8",
    )
    imported = cli("directory", "import", str(people), "--config", str(config))
    assert imported.exit_code == 0, imported.stderr
    return str(config)


def test_an_alert_to_an_empty_route_reaches_the_default_audience(
    cli, peers: Peers, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    config = _alert_setup(cli, peers, db_url, tmp_path, groups="oncall")  # nobody is in netops
    with caplog.at_level(logging.ERROR, logger="herald.alerts"):
        result = cli(
            "alert", "--config", config, "-s", "critical", "--summary", "Core down", "--label", "team=net",
            "--wait", "--json",
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["recipients"] == 2 and report["audience"] == "group:oncall"
    assert report["people"]["reached"] == 2 and report["sla"]["met"] is True
    assert sorted(m.rcpt_tos[0] for m in peers.smtp.messages) == ["alice@example.com", "bob@example.com"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        "routes[0] audience 'group:netops' selects no reachable person" in m
        and "paging the default route's audience 'group:oncall'" in m
        for m in errors
    ), errors

    alerts = json.loads(cli("report", "--json", "--config", config).stdout)["alerts"]
    assert alerts["items"][0]["audience"] == "group:oncall"
    assert alerts["items"][0]["people"]["reached"] == 2 and alerts["items"][0]["reach"] == 1.0


async def test_the_webhook_counts_unrouted_alerts_in_the_metric(
    cli, peers: Peers, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    extra = '[webhooks.alerts]\ntoken = "hook-token"\n[slack]\nalert_channel = "CALERTS"\n'
    config = _alert_setup(cli, peers, db_url, tmp_path, groups="", extra=extra)  # no oncall either
    herald = Herald.build(load_settings(Path(config)))
    metrics = HeraldMetrics(herald.store, herald.clock, herald.configured_channels())
    app = build_web_app(herald, metrics, routes=alert_routes(herald))
    auth = {"Authorization": "Bearer hook-token"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as http:
            assert "herald_alerts_unrouted_total 0.0" in (await http.get("/metrics")).text
            body = {"summary": "Core down", "severity": "critical", "labels": {"team": "net"}}
            with caplog.at_level(logging.ERROR, logger="herald.alerts"):
                first = await http.post("/hooks/alerts", json=body, headers=auth)
                again = await http.post("/hooks/alerts", json=body, headers=auth)  # the same group
                unmatched = {"summary": "Edge down", "severity": "critical", "labels": {"alertname": "Edge"}}
                third = await http.post("/hooks/alerts", json=unmatched, headers=auth)  # built-in default
            assert first.status_code == again.status_code == third.status_code == 202, first.text
            assert first.json()["groups"] and first.json()["notifications"]
            scraped = (await http.get("/metrics")).text
    finally:
        herald.store.dispose()
    assert "herald_alerts_unrouted_total 2.0" in scraped, scraped  # two groups opened, one counted each
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2, errors
    assert "the default route's audience 'group:oncall' selects nobody reachable either" in errors[0]
    assert "shown in slack.alert_channel CALERTS" not in errors[0]  # Slack is off: no bot token
    assert "not shown in Slack (slack.bot_token is not set)" in errors[0]
