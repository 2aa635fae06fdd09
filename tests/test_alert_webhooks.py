"""The alert webhooks over HTTP against ``HeraldServer`` (as ``herald serve`` wires it): auth, bad
bodies, size limit, Grafana HMAC, the generic alert end to end with the Slack alert message and its
Acknowledge / Resolve buttons (signed block_actions), deliveries at the SMTP and Twilio stand-ins."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_signing import (
    BOT_TOKEN,
    SIGNING_SECRET,
    TWILIO_SID,
    TWILIO_TOKEN,
    Harness,
    SignedSlack,
    block_action,
    herald_toml,
    sms_from,
)

from bot.alerts.auth import sign_body
from bot.alerts.escalation import alert_tick
from bot.alerts.web import MAX_BODY, alert_routes
from bot.app import Herald
from bot.config import load_settings
from bot.recipients.web import recipient_routes
from bot.server import HeraldServer, Job
from bot.standins.slack import PostedMessage, SlackStandIn
from bot.standins.smtp import SmtpStandIn
from bot.standins.twilio import TwilioStandIn
from bot.store import open_store
from bot.tables import Person, PersonGroup

ALERT_CHANNEL = "CALERTS"
ONCALL_USER = "UONCALL"
AM_TOKEN = "am-webhook-token"
GENERIC_TOKEN = "generic-webhook-token"
GRAFANA_SECRET = "grafana-hmac-secret"

# alice is on call (tier 0), bob is tier 1, carol tier 2; dave is in no group.
PEOPLE = [
    ("alice", "alice@example.com", "+4915110000001", "oncall"),
    ("bob", "bob@example.com", "+4915110000002", "tier1"),
    ("carol", "carol@example.com", "+4915110000003", "tier2"),
    ("dave", "dave@example.com", "+4915110000004", None),
]
PHONE = {name: phone for name, _, phone, _ in PEOPLE}
EMAIL = {name: email for name, email, _, _ in PEOPLE}

ALERT_TOML = """
[dispatcher]
poll_interval = "0.1s"
[webhooks.alertmanager]
token = "{am_token}"
[webhooks.alerts]
token = "{generic_token}"
[webhooks.grafana]
hmac_secret = "{grafana_secret}"
signature_header = "X-Grafana-Alerting-Signature"
[sla.critical]
ack_within = "{ack_within}"
escalate = ["group:tier1", "group:tier2"]
[[routes]]
match = {{ team = "core" }}
audience = "group:oncall"
channels = ["email", "sms"]
severity = "critical"
[[routes]]
match = {{ team = "net" }}
audience = "group:oncall"
channels = ["email", "sms"]
severity = "outage"
[[routes]]
match_re = {{ team = "web|storage" }}
audience = "group:oncall"
channels = ["email"]
severity = "info"
"""


def seed_people(db_url: str) -> None:
    store = open_store(db_url)
    try:
        with store.session() as session:
            for person_id, email, phone, _ in PEOPLE:
                session.add(Person(id=person_id, name=person_id.title(), email=email, phone=phone))
            session.commit()
            for person_id, _, _, group in PEOPLE:
                if group:
                    session.add(PersonGroup(person_id=person_id, group_name=group))
            session.commit()
    finally:
        store.dispose()


@dataclass
class AlertHarness(Harness):
    """``HeraldServer`` with the alert routes and tick, the stand-ins, and signed Slack requests."""

    config: Path

    @property
    def url(self) -> str:
        return self.server.url

    def sms_to(self, person: str) -> list[str]:
        return [m.body for m in self.twilio.messages if m.to == PHONE[person]]

    def mail_to(self, person: str) -> list[str]:
        return [str(m.message["Subject"]) for m in self.smtp.messages if EMAIL[person] in m.rcpt_tos]

    def alert_messages(self) -> list[PostedMessage]:
        return [m for m in self.slack.messages.values() if m.channel == ALERT_CHANNEL]

    async def click(self, action_id: str, group_id: str, user: str = ONCALL_USER) -> httpx.Response:
        message = next(m for m in self.alert_messages() if group_id in json.dumps(m.blocks))
        payload = block_action(
            action_id, group_id, user, ALERT_CHANNEL, self.slack.response_url(f"{action_id}-{group_id}"),
            ephemeral=False, message_ts=message.ts,
        )  # fmt: skip
        return await self.signed.interaction(payload)

    async def sms_reply(self, person: str, text: str) -> httpx.Response:
        """An inbound SMS from ``person``, signed as Twilio signs it (X-Twilio-Signature)."""
        return await sms_from(self.http, self.url, PHONE[person], text)

    async def restart(self) -> None:
        """Stop ``herald serve`` and start a new one on the same port and database."""
        port = int(self.url.rsplit(":", 1)[1])
        await self.server.stop()
        text = self.config.read_text(encoding="utf-8")
        self.config.write_text(text.replace("port = 0\n", f"port = {port}\n", 1), encoding="utf-8")
        self.server = start_server(self.config)
        await self.server.start()


def start_server(config: Path, tick_every: float = 0.25) -> HeraldServer:
    """What ``herald serve`` runs (its alert routes and scheduler job), with a fast tick for tests."""
    settings = load_settings(config)
    herald = Herald.build(settings)
    return HeraldServer(
        settings,
        herald=herald,
        routes=[*recipient_routes(herald), *alert_routes(herald)],
        jobs=[Job("alerts", tick_every, alert_tick(herald))],
        tick_every=0.5,
    )


@asynccontextmanager
async def running_alerts(db_url: str, tmp_path: Path, ack_within: str = "2s") -> AsyncIterator[AlertHarness]:
    """Seed people, start the stand-ins and Herald; ``critical`` alerts escalate after ``ack_within``."""
    seed_people(db_url)
    async with (
        SlackStandIn(token=BOT_TOKEN) as slack,
        SmtpStandIn() as smtp,
        TwilioStandIn(account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN) as twilio,
    ):
        extra = ALERT_TOML.format(
            am_token=AM_TOKEN,
            generic_token=GENERIC_TOKEN,
            grafana_secret=GRAFANA_SECRET,
            ack_within=ack_within,
        )
        text = herald_toml(
            db_url,
            slack.api_url,
            smtp.port,
            twilio.url,
            slack_extra=f'signing_secret = "{SIGNING_SECRET}"\nalert_channel = "{ALERT_CHANNEL}"\n',
            extra=extra,
        )
        config = tmp_path / "herald.toml"
        config.write_text(text, encoding="utf-8")
        server = start_server(config)
        await server.start()
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                signed = SignedSlack(http, f"{server.url}/slack/events", SIGNING_SECRET)
                harness = AlertHarness(server, slack, smtp, twilio, http, signed, db_url, config)
                try:
                    yield harness
                finally:
                    await harness.server.stop()
        finally:
            await server.stop()


async def eventually(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.05)


def button_value(message: PostedMessage, action_id: str) -> str | None:
    for block in message.blocks:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return str(element["value"])
    return None


@pytest.fixture
async def h(db_url: str, tmp_path: Path) -> AsyncIterator[AlertHarness]:
    async with running_alerts(db_url, tmp_path) as harness:
        yield harness


def generic(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "summary": "VPN concentrator down",
        "severity": "critical",
        "labels": {"team": "net", "site": "berlin"},
        "description": "both tunnels lost",
    }
    body.update(changes)
    return body


async def post(
    h: AlertHarness, path: str, body: Any, token: str | None = None, **headers: str
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **headers}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return await h.http.post(f"{h.url}{path}", content=content, headers=sent)


async def test_bad_requests_are_refused_and_store_nothing(h: AlertHarness) -> None:
    missing = await post(h, "/hooks/alerts", generic())
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await post(h, "/hooks/alerts", generic(), token="wrong")).status_code == 401
    assert (await post(h, "/hooks/alertmanager", generic(), token=GENERIC_TOKEN)).status_code == 401

    unreadable = await post(h, "/hooks/alerts", b"{nope", token=GENERIC_TOKEN)
    assert unreadable.status_code == 400
    assert unreadable.json()["field"] is None
    wrong = await post(h, "/hooks/alerts", generic(severity="panic"), token=GENERIC_TOKEN)
    assert wrong.status_code == 422
    assert wrong.json()["field"] == "severity"
    am = await post(
        h,
        "/hooks/alertmanager",
        {"version": "4", "status": "firing", "alerts": [{"labels": []}]},
        token=AM_TOKEN,
    )
    assert am.status_code == 422
    assert am.json() == {"error": "expected an object of string values", "field": "alerts[0].labels"}

    huge = b'{"summary": "' + b"x" * MAX_BODY + b'"}'
    assert (await post(h, "/hooks/alerts", huge, token=GENERIC_TOKEN)).status_code == 413

    body = json.dumps(
        {"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "X", "team": "web"}}]}
    )
    bad_sig = await post(h, "/hooks/grafana", body.encode(), **{"X-Grafana-Alerting-Signature": "00" * 32})
    assert bad_sig.status_code == 401
    no_sig = await post(h, "/hooks/grafana", body.encode(), token=GENERIC_TOKEN)
    assert no_sig.status_code == 401
    await asyncio.sleep(0.3)
    assert h.smtp.messages == [] and h.twilio.messages == [] and h.alert_messages() == []


async def test_grafana_signed_alert_is_accepted_and_a_slack_429_is_retried(h: AlertHarness) -> None:
    h.slack.rate_limit("chat.postMessage", times=1)
    body = json.dumps(
        {
            "receiver": "herald",
            "status": "firing",
            "orgId": 1,
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "DiskFull", "team": "storage", "host": "db1"},
                    "annotations": {"summary": "disk 95% full"},
                    "startsAt": "2026-01-01T12:00:00.000000001Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": "abcdef0123456789",
                }
            ],
            "title": "[FIRING:1] DiskFull",
            "state": "alerting",
            "message": "disk",
            "version": "1",
        }
    ).encode()
    signature = sign_body(GRAFANA_SECRET, body)
    accepted = await post(h, "/hooks/grafana", body, **{"X-Grafana-Alerting-Signature": signature})
    assert accepted.status_code == 202, accepted.text
    answer = accepted.json()
    assert answer["accepted"] == 1 and len(answer["groups"]) == 1 and len(answer["notifications"]) == 1
    await eventually(lambda: len(h.mail_to("alice")) == 1, what="the page by email")
    assert h.mail_to("alice") == ["[INFO] [FIRING:1] DiskFull"]
    assert h.twilio.messages == []  # the storage route is email only
    await eventually(lambda: len(h.alert_messages()) == 1, what="the Slack message after a 429")
    assert [call.answered for call in h.slack.calls_to("chat.postMessage")] == ["ratelimited", "ok"]
    assert "[INFO] [FIRING:1] DiskFull" in h.alert_messages()[0].text


async def test_generic_alert_pages_posts_to_slack_and_ack_stops_escalation(h: AlertHarness) -> None:
    accepted = await post(h, "/hooks/alerts", generic(labels={"team": "core"}), token=GENERIC_TOKEN)
    assert accepted.status_code == 202, accepted.text
    group_id = accepted.json()["groups"][0]
    await eventually(lambda: h.sms_to("alice") != [] and h.mail_to("alice") != [], what="the page")
    assert h.mail_to("alice") == ["[CRITICAL] [FIRING:1] VPN concentrator down"]
    assert h.sms_to("alice")[0].startswith("[CRITICAL] [FIRING:1] VPN concentrator down: Reply ACK")
    await eventually(lambda: len(h.alert_messages()) == 1, what="the Slack alert message")
    (message,) = h.alert_messages()
    assert button_value(message, "alert_ack") == group_id
    assert button_value(message, "alert_resolve") == group_id

    clicked = await h.click("alert_ack", group_id)
    assert clicked.status_code == 200
    await eventually(
        lambda: "Acknowledged by <@UONCALL>" in json.dumps(h.alert_messages()[0].blocks), what="ack shown"
    )
    assert button_value(h.alert_messages()[0], "alert_ack") is None  # Acknowledge is gone, Resolve stays
    assert button_value(h.alert_messages()[0], "alert_resolve") == group_id
    await asyncio.sleep(2.6)  # past ack_within: nobody else is paged
    assert h.sms_to("bob") == [] and h.sms_to("carol") == []

    again = await h.click("alert_ack", group_id, user="USOMEONE")
    assert again.status_code == 200
    replies = await _responses(h, f"alert_ack-{group_id}", 1)
    assert "already acknowledged by <@UONCALL>" in json.dumps(replies[-1])

    resolved = await h.click("alert_resolve", group_id)
    assert resolved.status_code == 200
    await eventually(lambda: "[RESOLVED]" in h.alert_messages()[0].text, what="resolved in Slack")
    await eventually(lambda: any("[RESOLVED]" in s for s in h.mail_to("alice")), what="the resolution notice")
    assert h.mail_to("alice")[-1] == "[CRITICAL] [RESOLVED] VPN concentrator down"
    assert h.mail_to("bob") == [] and h.mail_to("dave") == []
    assert button_value(h.alert_messages()[0], "alert_resolve") is None


async def _responses(h: AlertHarness, key: str, count: int) -> list[dict[str, Any]]:
    await h.slack.wait_for(lambda: len(h.slack.responses_to(key)) >= count, 10)
    return h.slack.responses_to(key)


async def test_unacknowledged_alert_escalates_tier_by_tier_then_an_sms_ack_stops_it(h: AlertHarness) -> None:
    accepted = await post(
        h, "/hooks/alerts", generic(summary="Core switch down", labels={"team": "core"}), token=GENERIC_TOKEN
    )
    group_id = accepted.json()["groups"][0]
    await eventually(lambda: h.sms_to("bob") != [], timeout=8, what="tier 1")
    assert h.sms_to("bob")[0].startswith("[CRITICAL] [ESCALATED tier 1] [FIRING:1] Core switch down")
    assert h.sms_to("carol") == []
    await eventually(lambda: h.sms_to("carol") != [], timeout=8, what="tier 2")
    assert "[ESCALATED tier 2]" in h.sms_to("carol")[0]
    await eventually(
        lambda: "Escalated to tier 2" in json.dumps(h.alert_messages()[0].blocks), what="steps in Slack"
    )
    history = json.dumps([entry["blocks"] for entry in h.alert_messages()[0].history])
    assert "Escalated to tier 1" in history
    # Carol replies ACK to the text message (Twilio's inbound webhook, signed).
    replied = await h.sms_reply("carol", "ack")
    assert replied.status_code == 200
    assert f"Acknowledged Core switch down (alert {group_id})" in replied.text
    await eventually(
        lambda: "Acknowledged by Carol (SMS)" in json.dumps(h.alert_messages()[0].blocks),
        what="SMS ack in Slack",
    )
    assert "no open alert" in (await h.sms_reply("carol", "ACK")).text
    count = len(h.twilio.messages)
    await asyncio.sleep(2.5)
    assert len(h.twilio.messages) == count  # no reminder after the ack
