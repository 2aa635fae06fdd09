"""Alert storms through the real intake (the ASGI app's webhooks) and the scheduler's tick driven by a
ManualClock: flood control bounds notifications per route and minute whatever the severity, folds
the rest into one summary that pages at once, runs one escalation chain for it (not one per alert),
and keeps Slack to one message per notification (the summary's message is the grouped one)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from slack_signing import sms_from
from sqlalchemy import func, select

from bot.alerts.escalation import alert_tick
from bot.alerts.flood import FLOOD_LIMIT
from bot.alerts.notify import DELIVERY, GROUP, INSTANCE, NOTIFICATION
from bot.alerts.web import alert_routes
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.metrics import HeraldMetrics
from bot.recipients.web import recipient_routes
from bot.standins.slack import SlackStandIn
from bot.store import Store
from bot.tables import Person, PersonGroup
from bot.web import build_web_app

AM_TOKEN = "am-storm-token"
BOT_TOKEN = "xoxb-storm-bot"
TWILIO_TOKEN = "storm-twilio-token"
ALERT_CHANNEL = "CALERTS"
TWILIO_FROM = "+15005550006"
STORM = 2000  # distinct alertnames in one webhook: 2,000 groups on the default route
ACK_WITHIN = 600.0
PEOPLE = [("alice", "+4915110000001", "oncall"), ("bob", "+4915110000002", "tier1")]
PEOPLE += [("carol", "+4915110000003", "tier2")]


@dataclass
class Storm:
    herald: Herald
    http: httpx.AsyncClient
    slack: SlackStandIn

    @property
    def clock(self) -> ManualClock:
        assert isinstance(self.herald.clock, ManualClock)
        return self.herald.clock

    async def alertmanager(self, names: list[str], status: str = "firing") -> dict[str, Any]:
        # No severity label: every alert is critical (mandatory), the kind flood control used to skip.
        body = {
            "version": "4",
            "status": status,
            "alerts": [
                {"labels": {"alertname": name}, "annotations": {"summary": f"{name} broke"}} for name in names
            ],
        }
        answer = await self.http.post(
            "/hooks/alertmanager", json=body, headers={"Authorization": f"Bearer {AM_TOKEN}"}
        )
        assert answer.status_code == 202, answer.text
        return dict(answer.json())

    async def tick_after(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await alert_tick(self.herald)()

    def notifications(self, kind: str) -> list[dict[str, Any]]:
        with self.herald.store.begin() as connection:
            found = connection.execute(select(NOTIFICATION).where(NOTIFICATION.c.kind == kind)).mappings()
            return sorted((dict(n) for n in found), key=lambda n: (n["created_at"], n["id"]))

    def count(self, table: Any, *where: Any) -> int:
        with self.herald.store.begin() as connection:
            return int(connection.execute(select(func.count()).select_from(table).where(*where)).scalar_one())

    def slack_calls(self) -> int:
        return len([c for c in self.slack.calls if c.method in ("chat.postMessage", "chat.update")])

    async def sms_ack(self, phone: str, text: str) -> str:
        answer = await sms_from(self.http, "", phone, text, TWILIO_TOKEN)
        assert answer.status_code == 200
        return answer.text


def seed(store: Store) -> None:
    with store.session() as session:
        for name, phone, _ in PEOPLE:
            session.add(Person(id=name, name=name.title(), email=f"{name}@example.com", phone=phone))
        session.commit()
        for name, _, group in PEOPLE:
            session.add(PersonGroup(person_id=name, group_name=group))
        session.commit()


@pytest.fixture
async def storm(store: Store, db_url: str) -> AsyncIterator[Storm]:
    seed(store)
    async with SlackStandIn(token=BOT_TOKEN) as slack:
        settings = load_settings(
            None,
            database={"url": db_url},
            webhooks={"alertmanager": {"token": AM_TOKEN}},
            slack={
                "bot_token": BOT_TOKEN,
                "signing_secret": "storm-signing-secret",
                "api_url": slack.api_url,
                "alert_channel": ALERT_CHANNEL,
            },
            twilio={"account_sid": "AC" + "0" * 32, "auth_token": TWILIO_TOKEN, "from_number": TWILIO_FROM},
            sla={"critical": {"ack_within": "10m", "escalate": ["group:tier1", "group:tier2"]}},
            quiet_hours={"kinds": []},
        )
        herald = Herald.build(settings, clock=ManualClock(), store=store)
        routes = [*recipient_routes(herald), *alert_routes(herald)]
        app = build_web_app(herald, HeraldMetrics(herald.store, herald.clock), routes=routes)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://herald", timeout=120) as http:
            yield Storm(herald, http, slack)


def summaries(storm: Storm, kind: str) -> list[dict[str, Any]]:
    return [n for n in storm.notifications(kind) if "alert groups" in n["title"]]


async def test_a_storm_of_critical_alerts_is_bounded_and_its_summary_escalates_once_per_tier(
    storm: Storm,
) -> None:
    answer = await storm.alertmanager([f"Broken{i:04d}" for i in range(STORM)])
    assert answer["accepted"] == STORM and len(answer["groups"]) == STORM
    # Every alert stored, as its own group.
    assert storm.count(INSTANCE) == STORM and storm.count(GROUP) == STORM
    # At most the limit in that minute (the first ones page individually, at once), plus one summary.
    pages = storm.notifications("alert")
    assert len(pages) <= FLOOD_LIMIT + 1
    (summary,) = summaries(storm, "alert")
    assert len(pages) - 1 == FLOOD_LIMIT - 1
    assert summary["severity"] == "critical"
    folded = STORM - len(pages) + 1
    assert summary["title"].startswith(f"[FIRING:{folded}] {folded} alert groups: ")
    assert summary["body"].startswith("Reply ACK to acknowledge this summary")
    assert "escalation follows this summary" in summary["body"]
    assert f"and {folded - 10} more groups." in summary["body"]
    assert set(answer["notifications"]) == {p["id"] for p in pages}
    # Slack: one grouped message for the summary, not one post per alert.
    posts = storm.slack.calls_to("chat.postMessage")
    assert len(posts) == len(pages)
    grouped = [m for m in storm.slack.messages.values() if "Flood control folded" in json.dumps(m.blocks)]
    assert len(grouped) == 1
    assert f"Flood control folded {STORM - len(pages)} more alert groups" in json.dumps(grouped[0].blocks)

    # Escalation: each tier once for the summary (and once for each group paged on its own).
    await storm.tick_after(ACK_WITHIN)
    tier1 = storm.notifications("escalation")
    assert len(tier1) == len(pages)
    (storm_tier1,) = summaries(storm, "escalation")
    assert storm_tier1["title"].startswith("[ESCALATED tier 1] [FIRING:")
    await storm.tick_after(ACK_WITHIN)
    assert len(summaries(storm, "escalation")) == 2
    assert len(storm.notifications("escalation")) == 2 * len(pages)
    # Reminders follow the summary too: two, to everyone paged so far.
    for _ in range(3):
        await storm.tick_after(ACK_WITHIN)
    assert len(summaries(storm, "reminder")) == 2
    assert len(storm.notifications("reminder")) == 2 * len(pages)
    assert storm.slack_calls() <= 6 * (FLOOD_LIMIT + 1)  # one edit per message per step at most


async def test_more_alerts_in_the_same_minute_wait_for_room_then_come_as_one_summary(storm: Storm) -> None:
    await storm.alertmanager([f"First{i:03d}" for i in range(40)])
    assert len(storm.notifications("alert")) == FLOOD_LIMIT
    late = await storm.alertmanager([f"Late{i:03d}" for i in range(40)])
    assert late["notifications"] == [] and len(late["held_back"]) == 40  # held, never dropped
    assert len(storm.notifications("alert")) == FLOOD_LIMIT
    # Slack: the held groups share one message too (the first held one's), not one post each.
    assert len(storm.slack.calls_to("chat.postMessage")) == FLOOD_LIMIT + 1
    shown = [m for m in storm.slack.messages.values() if "39 more alert groups" in json.dumps(m.blocks)]
    assert len(shown) == 1
    await storm.tick_after(61)
    pages = storm.notifications("alert")
    assert len(pages) == 2 * FLOOD_LIMIT  # the next minute's budget: singles, then one summary
    # Pages created at one clock instant have no order among themselves: pick the held singles out.
    singles = [page for page in pages[FLOOD_LIMIT:] if "alert groups" not in page["title"]]
    assert singles and "Held back 1m 1s by flood control" in singles[-1]["body"]
    assert len(summaries(storm, "alert")) == 2
    assert storm.count(INSTANCE) == 80
    assert len(storm.slack.calls_to("chat.postMessage")) == FLOOD_LIMIT + 1


async def test_acknowledging_one_alert_of_the_summary_stops_its_chain(storm: Storm) -> None:
    answer = await storm.alertmanager([f"Disk{i:03d}" for i in range(30)])
    (summary,) = summaries(storm, "alert")
    lead = json.loads(summary["meta"])["alert_lead"]
    follower = next(g for g in json.loads(summary["meta"])["alert_groups"] if g != lead)
    assert follower in answer["groups"]
    await storm.tick_after(ACK_WITHIN)
    assert len(summaries(storm, "escalation")) == 1
    reply = await storm.sms_ack("+4915110000002", f"ACK {follower}")  # bob, tier 1
    assert f"alert {follower}" in reply and "Acknowledged" in reply
    for _ in range(4):
        await storm.tick_after(ACK_WITHIN)
    assert len(summaries(storm, "escalation")) == 1
    assert summaries(storm, "reminder") == []
    with storm.herald.store.begin() as connection:
        timer = connection.execute(select(GROUP.c.next_escalation_at).where(GROUP.c.id == lead)).scalar_one()
    assert timer is None


async def test_a_storm_resolving_sends_one_notice_for_the_summary(storm: Storm) -> None:
    names = [f"Flap{i:03d}" for i in range(30)]
    await storm.alertmanager(names)
    posts = len(storm.slack.calls_to("chat.postMessage"))
    resolved = await storm.alertmanager(names, status="resolved")
    assert len(resolved["resolved"]) == 30
    notices = storm.notifications("resolution")
    assert len(notices) == FLOOD_LIMIT  # one per group paged on its own, one for the summary's groups
    (together,) = [n for n in notices if "alert groups" in n["title"]]
    assert together["title"].startswith("[RESOLVED] 21 alert groups: ")
    assert "No action needed." in together["body"] and "and 11 more groups." in together["body"]
    with storm.herald.store.begin() as connection:
        people = connection.execute(
            select(DELIVERY.c.person_id).where(DELIVERY.c.notification_id == together["id"]).distinct()
        ).scalars()
        assert set(people) == {"alice"}  # everyone the summary paged
    assert storm.count(NOTIFICATION, NOTIFICATION.c.kind == "resolution") == FLOOD_LIMIT
    assert len(storm.slack.calls_to("chat.postMessage")) == posts  # edits only
    assert len(storm.slack.calls_to("chat.update")) <= FLOOD_LIMIT
