"""The report checked from outside against what the peers received (SPEC "Truthful outcomes").

Every number ``announce --wait --json``, ``status --json``, ``status --recipients``,
``GET /api/notifications/{id}`` and ``/deliveries``, ``herald report --json`` and ``/metrics`` give
is compared with what the SMTP server and the Twilio stand-in actually took, and with each other:
a person reached on one of two channels counts once, a delivery handed over after the deadline
reaches nobody, a Twilio ``undelivered`` callback takes a reach back, a cancel never turns a missed
SLA into a met one. Both databases, real sockets.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Peers, dispatch_until
from test_announce_cli import announce
from test_confirmations import text_part
from test_recipients_web import WebServer, rows, start_web
from test_twilio_webhooks import INBOUND, STATUS, post_signed, sms_in, status_callback

from bot import reports, service
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.engine.ladder_tick import start_due_rungs
from bot.metrics import HeraldMetrics
from bot.people import ReachTargets
from bot.tables import DELIVERY_STATES

API_TOKEN = "report-api-token"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ENGINEERS = ("p0", "p2", "p4", "p6", "p8", "p10")  # write_directory: every engineer has a phone


def phone(person: str) -> str:
    return f"+4915112345{int(person[1:]):03d}"


def email(person: str) -> str:
    return f"{person}@example.com"


@pytest.fixture
def api(cli, peers: Peers, db_url: str, tmp_path: Path) -> Iterator[tuple[str, WebServer]]:  # type: ignore[no-untyped-def]
    config, server = start_web(cli, peers, db_url, tmp_path, extra=f'api_token = "{API_TOKEN}"\n')
    try:
        yield config, server
    finally:
        server.close()


def status_json(cli: Any, config: str, notification_id: str) -> dict[str, Any]:
    result = cli("status", notification_id, "--json", "--config", config)
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text ``text``."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {wanted}")


def per_person(listing: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for row in listing:
        found.setdefault(row["person_id"], {})[row["channel"]] = row["state"]
    return found


def test_two_channels_count_each_person_once_and_every_view_agrees(  # type: ignore[no-untyped-def]
    cli, peers: Peers, api: tuple[str, WebServer]
) -> None:
    config, server = api
    # p0: email refused for good, SMS fine; p2: SMS refused for good, email fine; p4: both refused.
    for person in ("p0", "p4"):
        peers.smtp.fail("rcpt", f"550 5.1.1 <{email(person)}>: user unknown", address=email(person))
    peers.twilio.faults[phone("p2")] = 21614
    peers.twilio.faults[phone("p4")] = 21211
    result = announce(
        cli, config, "--audience", "dept:engineering", "--channels", "email,sms",
        "--severity", "maintenance", "--title", "Patch Tuesday",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr  # 5 of 6 is short of maintenance's 0.99
    report = json.loads(result.stdout)

    # What the peers took, person by person.
    mailed = {rcpt.split("@")[0] for m in peers.smtp.messages for rcpt in m.rcpt_tos}
    texted = {p for p in ENGINEERS if any(m.to == phone(p) for m in peers.twilio.messages)}
    assert mailed == {"p2", "p6", "p8", "p10"} and texted == {"p0", "p6", "p8", "p10"}
    assert report["recipients"] == len(ENGINEERS)  # people, not deliveries (12)
    assert report["people"] == {
        "reached": len(mailed | texted),  # 5: p0 by SMS only, p2 by email only, each once
        "unreached": 1,  # p4
        "unreachable": 0,
        "cancelled": 0,
        "confirmed": 0,
    }
    assert report["sla"]["reach"] == pytest.approx(5 / 6) and report["sla"]["met"] is False
    for channel in ("email", "sms"):
        states = report["channels"][channel]
        assert set(DELIVERY_STATES) <= set(states)
        assert sum(states.values()) == len(ENGINEERS)  # each delivery once, in one state
        assert states["sent"] == 4 and states["failed"] == 2

    # status --json, the API and announce --wait say the same; the listings agree with the counts.
    assert status_json(cli, config, report["id"]) == report
    answer = server.http.get(f"/api/notifications/{report['id']}", headers=AUTH)
    assert answer.status_code == 200 and answer.json() == report
    listed = server.http.get(f"/api/notifications/{report['id']}/deliveries", headers=AUTH).json()
    cli_rows = cli("status", report["id"], "--recipients", "--json", "--config", config)
    assert cli_rows.exit_code == 0, cli_rows.stderr
    assert per_person(listed["deliveries"]) == per_person(json.loads(cli_rows.stdout))
    people = per_person(listed["deliveries"])
    assert len(people) == report["recipients"]
    assert {p for p, by in people.items() if "sent" in by.values()} == mailed | texted
    assert people["p4"] == {"email": "failed", "sms": "failed"}

    # A second notification, then the report over both equals the sum of their statuses.
    second = announce(cli, config, "--audience", "dept:finance", "--channels", "email", "--title", "Hi")
    assert second.exit_code == 0, second.stderr
    other = json.loads(second.stdout)
    summary = json.loads(cli("report", "--json", "--config", config).stdout)
    assert summary["notifications"] == 2
    for channel in ("email", "sms"):
        for state in DELIVERY_STATES:
            expected = sum(s["channels"].get(channel, {}).get(state, 0) for s in (report, other))
            assert summary["channels"][channel].get(state, 0) == expected, (channel, state)
    for key in ("reached", "unreached", "unreachable", "cancelled", "confirmed"):
        assert summary["people"][key] == report["people"][key] + other["people"][key]
    assert summary["people"]["reach"] == pytest.approx(11 / 12)
    assert {k: summary["sla"][k] for k in ("judged", "met", "missed")} == {"judged": 2, "met": 1, "missed": 1}

    # /metrics reads the same ledger.
    scraped = server.http.get("/metrics").text
    for channel in ("email", "sms"):
        for state in DELIVERY_STATES:
            value = metric(scraped, "herald_deliveries", channel=channel, state=state)
            assert value == summary["channels"][channel].get(state, 0), (channel, state)
    assert metric(scraped, "herald_sla_missed_notifications") == summary["sla"]["missed"]


def status_of(herald: Herald, notification_id: str) -> dict[str, Any]:
    found = service.status(herald, notification_id)
    assert found is not None
    return found


def build(config: str, clock: ManualClock) -> Herald:
    return Herald.build(load_settings(Path(config)), clock=clock)


def scrape(herald: Herald) -> str:
    settings = herald.settings
    metrics = HeraldMetrics(herald.store, herald.clock, ("email", "sms"), ReachTargets.of(settings))
    return metrics.render().decode()


def critical_email(herald: Herald, *people: str) -> str:
    audience = "person:" + ",".join(email(p) for p in people)
    request = service.AnnounceRequest(
        audience=audience, channels=("email",), severity="critical", title="Core switch", body="Down"
    )
    return service.announce(herald, request)


async def test_a_delivery_handed_over_after_the_deadline_reaches_nobody(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = await asyncio.to_thread(setup_config, cli, peers, db_url, tmp_path)
    clock = ManualClock(1_900_000_000.0)
    herald = build(config, clock)
    peers.smtp.fail("rcpt", "451 4.3.0 try again later", address=email("p2"), times=1)
    nid = critical_email(herald, "p0", "p2")  # critical: 2 minutes

    def channel() -> dict[str, int]:
        found = service.status(herald, nid)
        assert found is not None
        return dict(found["channels"]["email"])

    try:
        await dispatch_until(herald, lambda: channel()["sent"] == 1 and channel()["deferred"] == 1)
        clock.advance(600)  # the retry comes due long after the deadline
        await dispatch_until(herald, lambda: channel()["sent"] == 2)
        final = service.status(herald, nid)
        scraped = scrape(herald)
    finally:
        await herald.aclose()
    assert sorted(r for m in peers.smtp.messages for r in m.rcpt_tos) == [email("p0"), email("p2")]
    assert final is not None and final["state"] == "done"
    assert final["people"]["reached"] == 1 and final["people"]["unreached"] == 1  # p2: too late
    assert final["sla"]["reach"] == 0.5 and final["sla"]["met"] is False
    assert final["sla"]["delays_over"] == {"basis": "late", "deliveries": 1}
    assert metric(scraped, "herald_sla_missed_notifications") == 1
    shown = await asyncio.to_thread(status_json, cli, config, nid)
    assert shown["people"] == final["people"] and shown["sla"]["met"] is False


def setup_config(cli, peers: Peers, db_url: str, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    from test_announce_cli import setup

    return str(setup(cli, peers, db_url, tmp_path))


async def test_a_cancel_after_the_deadline_keeps_the_miss(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = await asyncio.to_thread(setup_config, cli, peers, db_url, tmp_path)
    clock = ManualClock(1_900_000_000.0)
    herald = build(config, clock)
    peers.smtp.fail("rcpt", "451 4.3.0 try again later", address=email("p2"))  # p2 never gets it
    nid = critical_email(herald, "p0", "p2")

    current = functools.partial(status_of, herald, nid)

    try:
        await dispatch_until(
            herald, lambda: current()["channels"]["email"]["sent"] == 1 and current()["left"] == 1
        )
        clock.advance(600)
        missed = current()
        assert missed["sla"]["met"] is False and missed["people"]["unreached"] == 1
        service.cancel(herald, nid, "test")
        after = current()
        scraped = scrape(herald)
        summary = reports.report(herald, clock.now() - 3600)
    finally:
        await herald.aclose()
    assert [r for m in peers.smtp.messages for r in m.rcpt_tos] == [email("p0")]
    # p2 was still waiting when the deadline passed: unreached, whatever came after.
    assert after["state"] == "cancelled" and after["channels"]["email"]["cancelled"] == 1
    assert after["people"]["reached"] == 1 and after["people"]["unreached"] == 1
    assert after["people"]["cancelled"] == 0
    assert after["sla"]["reach"] == 0.5 and after["sla"]["met"] is False
    assert metric(scraped, "herald_sla_missed_notifications") == 1
    assert summary["sla"]["missed"] == 1 and summary["people"]["reach"] == 0.5


def test_a_notification_cancelled_before_anything_went_is_not_judged(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = setup_config(cli, peers, db_url, tmp_path)
    queued = cli(
        "announce", "--config", config, "--yes", "--json", "--audience", "dept:engineering",
        "--title", "Later", "--at", "+1h",
    )  # fmt: skip
    assert queued.exit_code == 0, queued.stderr
    nid = json.loads(queued.stdout)["id"]
    herald = Herald.build(load_settings(Path(config)))
    try:
        service.cancel(herald, nid, "test")
    finally:
        herald.store.dispose()
    found = status_json(cli, config, nid)
    assert found["state"] == "cancelled" and found["channels"]["email"]["cancelled"] == 6
    assert found["people"]["reached"] == 0 and found["people"]["cancelled"] == 6
    assert found["sla"]["met"] is None  # nothing was sent: no SLA was met
    text = cli("status", nid, "--config", config).stdout
    assert "SLA met" not in text and "reach 100%" not in text, text
    assert "SLA not judged (cancelled)" in text, text
    summary = json.loads(cli("report", "--json", "--config", config).stdout)
    assert summary["sla"]["met"] == 0 and summary["sla"]["judged"] == 0
    line = next(x for x in cli("report", "--config", config).stdout.splitlines() if nid in x)
    assert "SLA met" not in line and "reach 100%" not in line, line
    assert peers.smtp.messages == []


def test_an_undelivered_callback_takes_the_reach_back(  # type: ignore[no-untyped-def]
    cli, peers: Peers, api: tuple[str, WebServer], db_url: str
) -> None:
    config, server = api
    audience = "person:" + ",".join(email(p) for p in ("p0", "p2", "p4"))
    result = announce(cli, config, "--audience", audience, "--channels", "sms", "--title", "Hi")
    assert result.exit_code == 0, result.stderr
    sent = json.loads(result.stdout)
    assert sent["people"]["reached"] == 3 and len(peers.twilio.messages) == 3
    query = "SELECT address, provider_id FROM delivery WHERE notification_id = :n"
    sids = dict(rows(db_url, query, n=sent["id"]))
    callbacks = {"p0": ("undelivered", "30005"), "p2": ("undelivered", "30003"), "p4": ("delivered", "")}
    for person, (state, code) in callbacks.items():
        for step in ("sent", state):  # Twilio reports sent, then the outcome
            params = status_callback(sids[phone(person)], step, phone(person), code if step == state else "")
            assert post_signed(server, STATUS, params).status_code == 204

    final = status_json(cli, config, sent["id"])
    assert final["channels"]["sms"]["delivered"] == 1 and final["channels"]["sms"]["failed"] == 2
    assert final["people"]["reached"] == 1 and final["people"]["unreached"] == 2
    assert final["sla"]["met"] is False
    assert server.http.get(f"/api/notifications/{sent['id']}", headers=AUTH).json() == final
    # 30005 (unknown number) suppresses; 30003 (handset off) is a soft failure and does not.
    assert rows(db_url, "SELECT address FROM suppression WHERE channel = 'sms'") == [(phone("p0"),)]

    again = announce(
        cli, config, "--audience", audience + ",p3@example.com", "--channels", "sms", "--title", "Again"
    )
    assert again.exit_code == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["people"] == {
        "reached": 2,  # p2 and p4
        "unreached": 0,
        "unreachable": 2,  # p0 suppressed, p3 without a phone
        "cancelled": 0,
        "confirmed": 0,
    }
    assert second["sla"]["reach"] == 1.0 and second["sla"]["met"] is True
    assert sorted(m.to for m in peers.twilio.messages[3:]) == [phone("p2"), phone("p4")]


async def test_a_ladder_sends_its_next_rung_only_to_the_unconfirmed_and_counts_people_once(  # type: ignore[no-untyped-def]
    cli, peers: Peers, api: tuple[str, WebServer]
) -> None:
    config, server = api
    clock = ManualClock(time.time())
    herald = build(config, clock)
    request = service.AnnounceRequest(
        audience="dept:engineering", channels=("email", "sms"), rungs=(("email",), ("sms",)),
        severity="critical", title="Core switch", body="Down", meta={"confirm": True},
    )  # fmt: skip
    nid = service.announce(herald, request)

    current = functools.partial(status_of, herald, nid)

    try:
        await dispatch_until(herald, lambda: current()["channels"]["email"]["sent"] == len(ENGINEERS))
        links = {
            m.rcpt_tos[0].split("@")[0]: re.search(r"https://\S+/c/\S+", text_part(m.message))
            for m in peers.smtp.messages
        }
        for person in ("p0", "p2"):  # confirm by the email link (a POST; the GET only shows it)
            link = links[person]
            assert link is not None
            posted = await asyncio.to_thread(server.http.post, server.local(link.group(0)))
            assert posted.status_code == 200
        assert start_due_rungs(herald) == []  # two minutes to the deadline: not yet
        clock.advance(60)
        started: list[tuple[str, int, int]] = []
        while not started:  # the rung's latest safe time, a second at a time
            clock.advance(1)
            started = start_due_rungs(herald)
            assert clock.now() < current()["deadline"]
        assert started == [(nid, 1, 4)]
        await dispatch_until(herald, lambda: current()["channels"]["sms"]["sent"] == 4)
        # p4 confirms twice, by SMS and by the email link: one person confirmed once.
        reply = await asyncio.to_thread(post_signed, server, INBOUND, sms_in("OK", phone("p4")))
        assert reply.status_code == 200
        link = links["p4"]
        assert link is not None
        assert (await asyncio.to_thread(server.http.post, server.local(link.group(0)))).status_code == 200
        final = current()
    finally:
        await herald.aclose()
    assert sorted(m.to for m in peers.twilio.messages) == sorted(phone(p) for p in ENGINEERS[2:])
    assert final["recipients"] == len(ENGINEERS)
    assert final["rungs"][0]["people"] == 4
    assert sum(final["channels"]["email"].values()) == 6 and sum(final["channels"]["sms"].values()) == 4
    assert final["people"] == {
        "reached": 6,  # four of them twice, counted once
        "unreached": 0,
        "unreachable": 0,
        "cancelled": 0,
        "confirmed": 3,
    }
    assert final["sla"]["met"] is True
    shown = await asyncio.to_thread(status_json, cli, config, nid)
    assert shown["people"] == final["people"] and shown["channels"] == final["channels"]
    text = (await asyncio.to_thread(cli, "status", nid, "--config", config)).stdout
    assert "confirmations: confirmed 3, not confirmed 3, unreachable 0" in text, text


def test_people_with_no_usable_address_are_unreachable_whatever_the_reason(  # type: ignore[no-untyped-def]
    cli, peers: Peers, api: tuple[str, WebServer], db_url: str
) -> None:
    config, server = api
    # p6 texts STOP and unsubscribes from info email in one click; p0's number is suppressed; p3 has none.
    assert post_signed(server, INBOUND, sms_in("STOP", phone("p6"))).status_code == 200
    clicked = server.http.post(server.page_path("p6"), files={"List-Unsubscribe": (None, "One-Click")})
    assert clicked.status_code == 200
    assert post_signed(server, INBOUND, sms_in("STOP", phone("p0"))).status_code == 200
    audience = "person:" + ",".join(email(p) for p in ("p0", "p3", "p6"))
    result = announce(cli, config, "--audience", audience, "--channels", "email,sms", "--title", "News")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(r for m in peers.smtp.messages for r in m.rcpt_tos) == [email("p0"), email("p3")]
    assert peers.twilio.messages == []
    found = rows(db_url, "SELECT person_id, channel, reason FROM delivery")
    reasons = {(person, channel): reason for person, channel, reason in found}
    assert reasons[("p6", "email")] == "opted_out" and reasons[("p6", "sms")] == "suppressed"
    assert reasons[("p3", "sms")] == "no_address" and reasons[("p0", "sms")] == "suppressed"
    assert report["people"] == {
        "reached": 2,  # p0 and p3 by email
        "unreached": 0,
        "unreachable": 1,  # p6: opted out of the one, suppressed on the other
        "cancelled": 0,
        "confirmed": 0,
    }
    assert report["channels"]["sms"]["suppressed"] == 3 and report["channels"]["email"]["suppressed"] == 1
    assert report["sla"]["reach"] == 1.0 and report["sla"]["met"] is True
    listed = server.http.get(f"/api/notifications/{report['id']}/deliveries", headers=AUTH).json()
    assert per_person(listed["deliveries"])["p6"] == {"email": "suppressed", "sms": "suppressed"}


async def test_no_verdict_while_a_later_rung_may_still_reach_who_is_left(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = await asyncio.to_thread(setup_config, cli, peers, db_url, tmp_path)
    clock = ManualClock(1_900_000_000.0)
    herald = build(config, clock)
    peers.smtp.fail("rcpt", f"550 5.1.1 <{email('p0')}>: user unknown", address=email("p0"))
    request = service.AnnounceRequest(
        audience="person:p0@example.com,p2@example.com", channels=("email", "sms"),
        rungs=(("email",), ("sms",)), severity="critical", title="Core switch", body="Down",
    )  # fmt: skip
    nid = service.announce(herald, request)

    current = functools.partial(status_of, herald, nid)

    try:
        await dispatch_until(herald, lambda: current()["left"] == 0)
        between = current()
        scraped = scrape(herald)
        while not start_due_rungs(herald):
            clock.advance(1)
        await dispatch_until(herald, lambda: current()["channels"]["sms"]["sent"] == 1)
        final = current()
    finally:
        await herald.aclose()
    # Email done (p0 failed), the SMS rung still to come: not judged yet, and not counted missed.
    assert between["people"]["unreached"] == 1 and between["rungs"][0]["started_at"] is None
    assert between["sla"]["met"] is None
    assert metric(scraped, "herald_sla_missed_notifications") == 0
    assert [m.to for m in peers.twilio.messages] == [phone("p0")]  # the rung: only who was not reached
    assert final["people"]["reached"] == 2 and final["people"]["unreached"] == 0
    assert final["sla"]["met"] is True and final["state"] == "done"
