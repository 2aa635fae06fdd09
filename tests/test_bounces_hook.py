"""``POST /hooks/bounces`` over real HTTP against ``HeraldServer``: auth, bad bodies naming the field,
forged tokens ignored, and what each kind of report does to mail sent through the SMTP stand-in with
VERP; the next announcement then skips the hard-bounced address."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Peers
from test_recipients_web import WebServer, announce_json, deliveries, rows, start_web

from bot.alerts.auth import sign_body
from bot.config import load_settings
from bot.recipients.bounce_web import bounce_routes
from bot.recipients.soft_failures import is_soft
from bot.server import HeraldServer
from bot.slack.status_blocks import tally

HOOK = "/hooks/bounces"
TOKEN = "bounce-hook-token"
HMAC_KEY = "bounce-hook-hmac"
EXTRA = (
    '[bounces]\nreturn_path = "bounces@example.com"\n'
    f'[webhooks.bounces]\ntoken = "{TOKEN}"\nhmac_secret = "{HMAC_KEY}"\n'
)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class BounceWeb(WebServer):
    def __init__(self, config: str) -> None:
        super().__init__(config)
        settings = load_settings(config)
        self.call(self.server.stop())
        self.server = HeraldServer(
            settings, herald=self.herald, dispatch=False, routes=bounce_routes(self.herald)
        )
        self.url = self.call(self.server.start())
        self.http.base_url = self.url


@pytest.fixture
def hook(cli, peers: Peers, db_url: str, tmp_path: Path) -> Iterator[tuple[str, BounceWeb]]:  # type: ignore[no-untyped-def]
    config, first = start_web(cli, peers, db_url, tmp_path, extra=EXTRA)
    first.close()
    server = BounceWeb(config)
    try:
        yield config, server
    finally:
        server.close()


def return_paths(peers: Peers) -> dict[str, str]:
    return {m.rcpt_tos[0]: m.mail_from for m in peers.smtp.messages}


def test_bad_requests_are_refused_naming_the_field(hook: tuple[str, BounceWeb]) -> None:
    _, server = hook
    good = {"recipient": "p0@example.com", "status": "5.1.1", "action": "failed"}
    assert server.http.post(HOOK, json=good).status_code == 401
    assert server.http.post(HOOK, json=good, headers={"Authorization": "Bearer wrong"}).status_code == 401
    bad = server.http.post(HOOK, content=b"{not json", headers=AUTH)
    assert bad.status_code == 400 and bad.json()["field"] is None
    for field, value in (("status", "550"), ("action", "bounced"), ("recipient", 7), ("token", ["x"])):
        answer = server.http.post(HOOK, json={**good, field: value}, headers=AUTH)
        assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    missing = server.http.post(HOOK, json={"status": "5.1.1", "action": "failed"}, headers=AUTH)
    assert missing.status_code == 422 and missing.json()["field"] == "recipient"
    body = json.dumps(good).encode()
    signed = {"X-Herald-Signature": "sha256=" + sign_body(HMAC_KEY, body), "Content-Type": "application/json"}
    answer = server.http.post(HOOK, content=body, headers=signed)
    assert answer.status_code == 200 and answer.json() == {"outcome": "unmatched", "delivery_id": None}
    forged = {"X-Herald-Signature": sign_body("another key", body)}
    assert server.http.post(HOOK, content=body, headers=forged).status_code == 401
    paths = server.http.get("/openapi.json").json()["paths"]
    assert paths[HOOK]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "recipient",
        "status",
        "action",
    ]


def test_reports_fail_suppress_or_change_nothing(  # type: ignore[no-untyped-def]
    cli, hook: tuple[str, BounceWeb], peers: Peers, db_url: str
) -> None:
    config, server = hook
    first = announce_json(cli, config, "dept:engineering", "email", "info", "One")
    ids = dict(rows(db_url, "SELECT address, id FROM delivery WHERE notification_id = :n", n=first["id"]))
    verp, message_ids = (
        return_paths(peers),
        {m.rcpt_tos[0]: m.message["Message-ID"] for m in peers.smtp.messages},
    )

    def post(address: str, status: str, action: str = "failed", **extra: str) -> dict[str, object]:
        body = {
            "recipient": address,
            "status": status,
            "action": action,
            "diagnostic": "smtp; 550 no",
            **extra,
        }
        answer = server.http.post(HOOK, json=body, headers=AUTH)
        assert answer.status_code == 200, answer.text
        result: dict[str, object] = answer.json()
        return result

    p0, p2, p4, p6 = (f"p{n}@example.com" for n in (0, 2, 4, 6))
    token = verp[p6].split("+")[1].split("@")[0]
    altered = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert post(p6, "5.1.1", token=altered) == {"outcome": "forged", "delivery_id": None}
    assert post(p0, "5.1.1", token=verp[p0]) == {"outcome": "suppressed", "delivery_id": ids[p0]}
    assert post(p2, "5.7.1", message_id=message_ids[p2]) == {"outcome": "failed", "delivery_id": ids[p2]}
    assert post(p4, "4.4.7", "delayed", token=verp[p4])["outcome"] == "delayed"
    assert post(p6, "4.2.2", token=verp[p6])["outcome"] == "soft"
    assert post(p4, "5.1.1", message_id="<someone-else@example.com>")["outcome"] == "unmatched"
    state = deliveries(db_url, first["id"])
    assert state[("p0", "email")] == ("failed", "bounced: 5.1.1 smtp; 550 no")
    assert state[("p2", "email")] == ("failed", "bounced: 5.7.1 smtp; 550 no")
    assert state[("p4", "email")] == ("sent", None)  # delayed: no change; unmatched: no change
    assert state[("p6", "email")] == ("failed", "bounced: 4.2.2 smtp; 550 no")
    assert is_soft("email", "failed", "bounced: 4.2.2 smtp; 550 no")
    assert dict(rows(db_url, "SELECT address, source FROM suppression")) == {p0: "bounce"}

    status = json.loads(cli("status", first["id"], "--json", "--config", config).stdout)
    assert (status["channels"]["email"]["bounced"], status["channels"]["email"]["failed"]) == (3, 0)
    assert status["channels"]["email"]["sent"] == 3 and status["people"]["reached"] == 3
    assert (
        "failed"
        not in cli("status", first["id"], "--config", config).stdout.split("email:")[1].split("\n")[0]
    )
    assert "bounced 3" in cli("status", first["id"], "--config", config).stdout
    report = json.loads(cli("report", "--json", "--config", config).stdout)
    assert report["channels"]["email"]["bounced"] == 3 and report["channels"]["email"]["failed"] == 0
    bounces = report["bounces"]
    assert bounces["count"] == 3 and 0 <= bounces["median_delay_s"] <= bounces["max_delay_s"] < 120
    assert "bounced later: 3, median " in cli("report", "--config", config).stdout
    listed = cli("suppressions", "list", "--config", config).stdout
    assert f"{p0:<40}" in listed and "UTC  bounce: bounced: 5.1.1 smtp; 550 no" in listed

    second = announce_json(cli, config, "dept:engineering", "email", "info", "Two")
    assert second["channels"]["email"]["suppressed"] == 1
    assert deliveries(db_url, second["id"])[("p0", "email")][0] == "suppressed"
    assert sum(1 for m in peers.smtp.messages if m.rcpt_tos == [p0]) == 1  # only the first notice


def test_the_slack_progress_counts_bounced_as_failed() -> None:
    counted = tally({"email": {"sent": 2, "bounced": 1, "failed": 1}, "sms": {"delivered": 1}})
    assert (counted.total, counted.sent, counted.failed, counted.left) == (5, 3, 2, 0)


def test_a_hard_bounce_for_one_person_misses_the_critical_sla(  # type: ignore[no-untyped-def]
    cli,
    hook: tuple[str, BounceWeb],
    peers: Peers,
    db_url: str,
) -> None:
    """Issue 14: ``announce --severity critical --wait`` meets the SLA; a hard bounce for one person,
    reported later on the webhook, moves reach below 1.0 and status/report then say the SLA was missed."""
    config, server = hook
    sent = announce_json(cli, config, "dept:engineering", "email", "critical", "Core switch down")
    people = len(peers.smtp.messages)
    assert people >= 3 and sent["people"]["reached"] == people, sent["people"]
    assert sent["sla"]["met"] is True and sent["sla"]["reach"] == 1.0 and sent["sla"]["reach_target"] == 1.0
    address = "p0@example.com"
    verp = return_paths(peers)[address]
    body = {"recipient": address, "status": "5.1.1", "action": "failed", "token": verp, "diagnostic": "550"}
    answer = server.http.post(HOOK, json=body, headers=AUTH)
    assert answer.status_code == 200 and answer.json()["outcome"] == "suppressed", answer.text

    status = json.loads(cli("status", sent["id"], "--json", "--config", config).stdout)
    assert status["people"]["reached"] == people - 1 and status["people"]["unreached"] == 1
    assert status["sla"]["reach"] == (people - 1) / people < 1.0
    assert status["sla"]["met"] is False
    text = cli("status", sent["id"], "--config", config).stdout
    assert "MISSED" in text and f"reached {people - 1}, unreached 1" in text, text
    assert "reach 100%" not in text and "(target 100%)" in text, text
    report = json.loads(cli("report", "--json", "--config", config).stdout)
    (item,) = [i for i in report["items"] if i["id"] == sent["id"]]
    assert item["sla"]["met"] is False and item["sla"]["reach"] < 1.0
    line = next(x for x in cli("report", "--config", config).stdout.splitlines() if sent["id"] in x)
    assert "SLA MISSED" in line and "reach 100%" not in line, line
    assert rows(db_url, "SELECT address FROM suppression") == [(address,)]
