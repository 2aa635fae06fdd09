"""The alert lifecycle against the real store (SQLite and PostgreSQL), time driven by a ManualClock:
dedup, repeat, grouping, flood control, resolution audience, escalation idempotency, acks, the report."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot.alerts import escalation, notify
from bot.alerts.acks import ack_by_phone, acknowledge, resolve
from bot.alerts.intake import fingerprint_of
from bot.alerts.lifecycle import ingest
from bot.alerts.models import Alert, AlertBatch
from bot.alerts.report import alert_report
from bot.alerts.tables import AlertGroup
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import QuietHours, load_settings
from bot.engine.create import NewNotification, ensure_notification
from bot.store import Store
from bot.tables import Delivery, Notification, Person, PersonGroup, table_of

GROUP = table_of(AlertGroup)
NOTIFICATION = table_of(Notification)
DELIVERY = table_of(Delivery)

PEOPLE = [
    ("alice", "+4915110000001", "oncall"),
    ("bob", "+4915110000002", "tier1"),
    ("carol", "+4915110000003", "tier2"),
    ("dave", "+4915110000004", "web"),
    ("erin", "+4915110000005", None),
]


def seed(store: Store) -> None:
    with store.session() as session:
        for person_id, phone, _group in PEOPLE:
            session.add(
                Person(id=person_id, name=person_id.title(), email=f"{person_id}@example.com", phone=phone)
            )
        session.commit()
        for person_id, _, group in PEOPLE:
            if group:
                session.add(PersonGroup(person_id=person_id, group_name=group))
        session.commit()


@pytest.fixture
def herald(store: Store, db_url: str) -> Iterator[Herald]:
    seed(store)
    settings = load_settings(
        None,
        database={"url": db_url},
        twilio={"account_sid": "AC" + "0" * 32, "auth_token": "t", "from_number": "+15005550006"},
        sla={
            "critical": {"ack_within": "10m", "escalate": ["group:tier1", "group:tier2"]},
            "info": {"repeat_interval": "1h"},
        },
        routes=[
            {"match": {"team": "net"}, "audience": "group:oncall", "channels": ["email", "sms"]},
            {"match": {"team": "web"}, "audience": "group:web", "severity": "info", "group_by": ["instance"]},
            {"match": {"team": "db"}, "audience": "group:web", "group_by": ["instance"]},
        ],
        quiet_hours={"kinds": []},
    )
    yield Herald.build(settings, clock=ManualClock(), store=store)


def firing(name: str, status: str = "firing", **labels: str) -> Alert:
    full = {"alertname": name, **labels}
    return Alert(
        status=status,
        labels=full,
        annotations={"summary": f"{name} on {labels}"},
        fingerprint=fingerprint_of(full),
    )  # type: ignore[arg-type]


def batch(*alerts: Alert, source: str = "alertmanager") -> AlertBatch:
    return AlertBatch(source=source, alerts=tuple(alerts))


def rows(herald: Herald, table: Any, *where: Any) -> list[dict[str, Any]]:
    with herald.store.begin() as connection:
        return [dict(r) for r in connection.execute(select(table).where(*where)).mappings()]


def notifications(herald: Herald, kind: str | None = None) -> list[dict[str, Any]]:
    found = rows(herald, NOTIFICATION, *([NOTIFICATION.c.kind == kind] if kind else []))
    return sorted(found, key=lambda n: n["created_at"])


def people_of(herald: Herald, notification_id: str) -> set[str]:
    return {d["person_id"] for d in rows(herald, DELIVERY, DELIVERY.c.notification_id == notification_id)}


def group(herald: Herald, group_id: str) -> dict[str, Any]:
    (row,) = rows(herald, GROUP, GROUP.c.id == group_id)
    return row


def advance(herald: Herald, seconds: float) -> None:
    clock = herald.clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds)


def test_firing_notifies_once_and_a_resend_does_not(herald: Herald) -> None:
    first = ingest(herald, batch(firing("LinkDown", team="net", port="1")))
    assert len(first.groups) == 1 and len(first.notifications) == 1
    (page,) = notifications(herald, "alert")
    assert page["title"] == "[FIRING:1] LinkDown"
    assert page["severity"] == "critical"  # no severity label, no route severity
    assert page["channels"] == "email,sms"
    assert people_of(herald, page["id"]) == {"alice"}
    assert page["body"].startswith("Reply ACK to acknowledge")
    assert json.loads(page["meta"])["alert_group"] == first.groups[0]

    again = ingest(herald, batch(firing("LinkDown", team="net", port="1")))
    assert again.groups == first.groups
    assert again.notifications == ()
    assert again.deduplicated == 1
    assert len(notifications(herald)) == 1


def test_repeat_interval_and_updates(herald: Herald) -> None:
    opened = ingest(herald, batch(firing("Slow", team="web", instance="w1")))
    gid = opened.groups[0]
    advance(herald, 1800)
    assert ingest(herald, AlertBatch("alerts", ())).accepted == 0
    assert ingest(herald, batch(firing("Slow", team="web", instance="w1"))).notifications == ()
    advance(herald, 1801)  # repeat_interval (1h) since the page
    repeat = ingest(herald, batch(firing("Slow", team="web", instance="w1")))
    assert len(repeat.notifications) == 1
    assert "Still firing." in notifications(herald)[-1]["body"]
    # A new alert joining the group: an update, but not sooner than a minute after the last one.
    joined = ingest(herald, batch(firing("Slower", team="web", instance="w1")))
    assert joined.groups == (gid,)
    assert joined.notifications == ()
    assert group(herald, gid)["pending"] == "update"
    advance(herald, 61)
    escalation.run_due(herald)
    latest = notifications(herald)[-1]
    assert latest["title"] == "[FIRING:2] instance=w1"
    assert "More alerts joined" in latest["body"]
    assert len(notifications(herald, "alert")) == 3


def test_a_storm_of_500_is_one_notification(herald: Herald) -> None:
    storm = [firing("HighLatency", team="net", instance=f"api-{i}") for i in range(500)]
    result = ingest(herald, batch(*storm))
    assert result.accepted == 500
    assert len(result.groups) == 1
    (page,) = notifications(herald)
    assert page["title"] == "[FIRING:500] HighLatency"
    assert "and 490 more." in page["body"]
    assert page["recipients"] == 1
    assert ingest(herald, batch(*storm)).notifications == ()  # Alertmanager re-sending the group


def test_resolution_goes_to_everyone_notified_at_every_tier(herald: Herald) -> None:
    gid = ingest(herald, batch(firing("LinkDown", team="net"))).groups[0]
    advance(herald, 600)
    escalation.run_due(herald)  # tier 1
    assert people_of(herald, notifications(herald, "escalation")[0]["id"]) == {"bob"}
    result = ingest(herald, batch(firing("LinkDown", status="resolved", team="net")))
    assert result.resolved_groups == (gid,)
    (notice,) = notifications(herald, "resolution")
    assert people_of(herald, notice["id"]) == {"alice", "bob"}
    assert notice["title"] == "[RESOLVED] LinkDown"
    assert group(herald, gid)["next_escalation_at"] is None
    advance(herald, 3600)
    escalation.run_due(herald)
    assert len(notifications(herald, "escalation")) == 1  # resolved: the chain stopped
    # The same alert firing again opens a new group and pages again.
    reopened = ingest(herald, batch(firing("LinkDown", team="net")))
    assert reopened.groups != (gid,) and len(reopened.notifications) == 1


def test_escalation_steps_are_taken_once_even_after_a_crash_mid_step(herald: Herald) -> None:
    gid = ingest(herald, batch(firing("LinkDown", team="net"))).groups[0]
    advance(herald, 599)
    assert escalation.escalate_due(herald) == []
    advance(herald, 1)
    assert len(escalation.escalate_due(herald)) == 1
    assert escalation.escalate_due(herald) == []  # a double tick
    assert group(herald, gid)["step"] == 1
    # A process wrote step 2's notification and died before moving the group: the tick completes it.
    advance(herald, 600)
    row = group(herald, gid)
    written = NewNotification(
        id="ncrashed001", kind="escalation", severity="critical", title="t", body="b", audience="group:tier2",
        channels=("email",), created_by="test", created_at=0.0, start_at=0.0, deadline=1.0,
        idempotency_key=f"alert:{gid}:step:2",
    )  # fmt: skip
    ensure_notification(herald.store, written, notify.people_for("group:tier2"))
    assert row["step"] == 1
    taken = escalation.escalate_due(herald)
    assert taken == ["ncrashed001"]
    assert group(herald, gid)["step"] == 2
    assert len(notifications(herald, "escalation")) == 2
    # Then the reminders (to everyone paged so far), then nothing more.
    for _ in range(4):
        advance(herald, 600)
        escalation.escalate_due(herald)
    (first, _second) = notifications(herald, "reminder")
    assert people_of(herald, first["id"]) == {"alice", "bob", "carol"}
    assert group(herald, gid)["step"] == 4
    assert group(herald, gid)["next_escalation_at"] is None


def test_two_processes_ticking_at_once_take_a_step_once(herald: Herald) -> None:
    ingest(herald, batch(firing("LinkDown", team="net")))
    advance(herald, 600)
    errors: list[BaseException] = []

    def tick() -> None:
        try:
            escalation.escalate_due(herald)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(notifications(herald, "escalation")) == 1


def test_concurrent_webhooks_for_one_group_open_it_once(herald: Herald) -> None:
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            ingest(herald, batch(firing("Flap", team="net", instance=f"i{i}")))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    groups = rows(herald, GROUP)
    assert len(groups) == 1
    with herald.store.begin() as connection:
        count = connection.execute(select(func.count()).select_from(notify.INSTANCE)).scalar_one()
    assert count == 6
    assert len(notifications(herald, "alert")) == 1


def test_ack_stops_the_chain_and_cancels_unsent_escalations(herald: Herald) -> None:
    gid = ingest(herald, batch(firing("LinkDown", team="net"))).groups[0]
    advance(herald, 600)
    escalation.run_due(herald)
    (tier1,) = notifications(herald, "escalation")
    outcome = acknowledge(herald, gid, "slack:U123")
    assert outcome.changed and outcome.cancelled == 2  # bob's email and sms were still queued
    assert {d["state"] for d in rows(herald, DELIVERY, DELIVERY.c.notification_id == tier1["id"])} == {
        "cancelled"
    }
    advance(herald, 6000)
    escalation.run_due(herald)
    assert len(notifications(herald, "escalation")) == 1
    again = acknowledge(herald, gid, "slack:U999")
    assert not again.changed and "already acknowledged by <@U123>" in again.message
    # More alerts joining an acknowledged group: no new page.
    assert ingest(herald, batch(firing("LinkDown", team="net", port="2"))).notifications == ()
    advance(herald, 120)
    escalation.run_due(herald)
    assert len(notifications(herald, "alert")) == 1


def test_ack_by_sms_acks_the_latest_open_group_that_paged_the_number(herald: Herald) -> None:
    one = ingest(herald, batch(firing("LinkDown", team="net"))).groups[0]
    advance(herald, 5)
    two = ingest(herald, batch(firing("BgpDown", team="net"))).groups[0]
    assert ack_by_phone(herald, "+4915110000001", " ack ") == (
        "Herald: no open alert waiting for an acknowledgement paged this number."
    )  # queued pages are no page yet: a bare ACK answers only what reached the phone
    with herald.store.begin() as connection:  # the dispatcher hands both pages to Twilio
        connection.execute(
            update(DELIVERY)
            .where(DELIVERY.c.channel == "sms")
            .values(state="sent", sent_at=herald.clock.now())
        )
    assert ack_by_phone(herald, "+4915110000001", "STOP") is None
    assert ack_by_phone(herald, "+4915110000004", "ack") == (
        "Herald: no open alert waiting for an acknowledgement paged this number."
    )
    reply = ack_by_phone(herald, "+4915110000001", " ack ")
    assert reply is not None and "Acknowledged BgpDown" in reply
    assert group(herald, two)["acked_by"] == "sms:+4915110000001 (Alice)"
    assert group(herald, one)["acked_at"] is None
    reply = ack_by_phone(herald, "+4915110000001", f"ACK {one}")
    assert reply is not None and "Acknowledged LinkDown" in reply
    assert notify.display_actor(group(herald, one)["acked_by"]) == "Alice (SMS)"


def test_flood_control_folds_then_holds_and_never_drops(herald: Herald) -> None:
    # 15 non-urgent groups (route "web" groups by instance, severity info) in one webhook call.
    first = ingest(herald, batch(*[firing("Err", team="web", instance=f"w{i}") for i in range(15)]))
    assert len(first.groups) == 15
    sent = notifications(herald, "alert")
    assert len(sent) == 10  # 9 pages + 1 summary of the other 6
    summary = next(n for n in sent if "alert groups" in n["title"])
    assert summary["title"].startswith("[FIRING:6] 6 alert groups: ")
    assert "Flood control" in summary["body"]
    # More within the minute: held back, not dropped, and not silently either.
    held = ingest(herald, batch(firing("Err", team="web", instance="late")))
    assert held.notifications == () and held.held_back == held.groups
    assert group(herald, held.groups[0])["held_back"] == 1
    advance(herald, 61)
    escalation.run_due(herald)
    late = notifications(herald, "alert")[-1]
    assert "Held back 1m 1s by flood control" in late["body"]
    assert late["title"] == "[FIRING:1] instance=late"


def test_urgent_alerts_are_never_held(herald: Herald) -> None:
    # Route "db" takes the severity from the label: warnings (info) fill its budget...
    ingest(
        herald, batch(*[firing("Err", team="db", instance=f"d{i}", severity="warning") for i in range(12)])
    )
    assert len(notifications(herald, "alert")) == 10
    held = ingest(herald, batch(firing("Err", team="db", instance="d99", severity="warning")))
    assert held.held_back == held.groups
    # ...and a critical alert on the same full route still goes out at once, on its own.
    urgent = ingest(
        herald, batch(*[firing("Down", team="db", instance=f"c{i}", severity="critical") for i in range(3)])
    )
    assert len(urgent.notifications) == 3
    assert all(n["severity"] == "critical" for n in notifications(herald, "alert")[-3:])


def test_manual_resolve_and_the_report(herald: Herald) -> None:
    gid = ingest(herald, batch(firing("LinkDown", team="net"))).groups[0]
    advance(herald, 120)
    acknowledge(herald, gid, "slack:U1")
    late = ingest(herald, batch(firing("DiskFull", team="net"))).groups[0]
    advance(herald, 700)
    escalation.run_due(herald)
    outcome = resolve(herald, late, "slack:U2")
    assert outcome.changed
    assert not resolve(herald, late, "slack:U2").changed
    assert notifications(herald, "resolution")[0]["title"] == "[RESOLVED] DiskFull"
    report = alert_report(herald, 0.0)
    assert report["groups"] == 2
    by_id = {item["id"]: item for item in report["items"]}
    assert by_id[gid]["ack_s"] == 120 and by_id[gid]["ack_met"] is True
    assert by_id[late]["ack_met"] is False
    assert by_id[late]["tiers_paged"][0]["audience"] == "group:tier1"
    assert report["ack_sla"] == {"judged": 2, "met": 1, "missed": 1, "met_pct": 50.0}


def test_alerts_follow_quiet_hours_and_preferences_like_announcements(herald: Herald) -> None:
    # Quiet hours on (22:00-07:00 UTC by default); the clock stands at midnight UTC.
    quiet = Herald.build(
        herald.settings.model_copy(update={"quiet_hours": QuietHours()}),
        clock=herald.clock,
        store=herald.store,
    )
    info = ingest(quiet, batch(firing("Slow", team="web", instance="w1")))
    urgent = ingest(quiet, batch(firing("LinkDown", team="net")))
    (info_id,) = info.notifications
    (urgent_id,) = urgent.notifications
    assert {
        (d["state"], d["reason"]) for d in rows(quiet, DELIVERY, DELIVERY.c.notification_id == info_id)
    } == {("deferred", "quiet_hours")}
    assert {d["state"] for d in rows(quiet, DELIVERY, DELIVERY.c.notification_id == urgent_id)} == {"queued"}
