"""Why it was late (SPEC "Truthful outcomes"): each delivery's waits by cause, written with its claim
and outcomes, summed into ``sla.delays``, explained by ``herald status ID --why`` and named per missed
notification by ``herald report``. The attribution as pure functions first, then end to end through
the CLI, the dispatcher and the real SMTP client into the SMTP stand-in, on both databases."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC
from pathlib import Path

import pytest
from conftest import Peers, dispatch_until
from test_announce_cli import announce, setup
from test_quiet_hours import PEOPLE, at, create
from test_quiet_hours import write_config as quiet_config
from test_recipients_web import rows

from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.engine.delays import CAUSES, attribute, dominant, miss_cause, ranked
from bot.engine.ledger import Claimed
from bot.engine.outcomes import RetryPolicy, decide
from bot.engine.timings import Before, Waits, attempt_waits
from bot.recipients.tables import PersonSettings
from channels.base import Receipt, TransientError

T0 = 1_800_000_000.0
ITEM = Claimed(1, "n1", "p1", "email", "p1@example.com", T0 + 60, 1, T0, due_at=T0, claimed_at=T0 + 10)
POLICY = RetryPolicy(retry_for=3600, base=10, jitter=0.0)


def test_attribute_leaves_the_unexplained_rest_to_the_queue() -> None:
    delays = attribute(10.0, {"throttle": 6.0, "provider": 0.5, "quiet_hours": 0.0})
    assert delays == {
        "queue": 3.5,
        "throttle": 6.0,
        "quiet_hours": 0.0,
        "retry": 0.0,
        "provider": 0.5,
        "channel_down": 0.0,
    }
    assert list(delays) == list(CAUSES)
    assert attribute(1.0, {"retry": 2.0})["queue"] == 0.0  # never negative
    assert dominant(delays) == "throttle"
    assert dominant(attribute(0.0, {})) is None
    assert [cause for cause, _, _ in ranked(delays)] == ["throttle", "queue", "provider"]
    assert ranked(delays)[0][2] == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("state", "attempt", "due_at", "expected"),
    [
        ("sent", "sent", None, (1.0, 0.0, 0.5, 2.0)),  # the provider took 2 s
        ("deferred", "transient", T0 + 40, (1.0, 30.0, 0.5, 0.0)),  # the failed try and its backoff
        ("deferred", "channel_down", T0 + 12, (1.0, 0.0, 2.5, 0.0)),  # the try that found it down
        ("failed", "permanent", None, (1.0, 2.0, 0.5, 0.0)),
    ],
)
def test_attempt_waits(state: str, attempt: str, due_at: float | None, expected: tuple[float, ...]) -> None:
    before = Before(started=T0 + 10, throttle=1.0, down=0.5)
    assert attempt_waits(state, attempt, T0 + 12, due_at, before) == pytest.approx(expected)


def test_queue_wait_splits_into_throttle_and_outage() -> None:
    waits = Waits(T0)
    assert waits.queued(T0, T0 + 5, waited=0.0) == (0.0, 0.0)  # unthrottled and never down: queue
    waits.note_claim(T0 + 1, 0.8)  # the pacer held the channel back 0.8 s by then
    waits.note_claim(T0 + 5, 3.8)
    waits.follow(T0 + 6, T0 + 6)  # down from T0 + 6...
    waits.follow(None, T0 + 8)  # ... to T0 + 8
    waits.note_claim(T0 + 9, 4.0)
    assert waits.queued(T0, T0 + 1.5, waited=1.0) == pytest.approx((1.0, 0.0))
    assert waits.queued(T0 + 1, T0 + 5, waited=3.8) == pytest.approx((3.0, 0.0))
    assert waits.queued(T0 + 1, T0 + 9, waited=4.0) == pytest.approx((3.2, 2.0))
    assert waits.queued(T0 + 1, T0 + 2, waited=9.0) == pytest.approx((1.0, 0.0))  # at most the wait
    assert waits.queued(T0 + 9, T0 + 9, waited=4.0) == (0.0, 0.0)
    waits.follow(T0 + 10, T0 + 10)  # down now: the open outage counts up to the send
    assert waits.queued(T0 + 9, T0 + 12, waited=4.0) == pytest.approx((0.0, 2.0))
    before = waits.before(ITEM, T0 + 10.5, waited=4.5)  # due at T0, its send began at T0 + 10.5
    assert before == pytest.approx((T0 + 10.5, 4.5, 2.5))
    sent = decide(ITEM, Receipt("<m1>", "250 ok"), T0 + 11, False, POLICY, random.Random(1), before)
    assert sent.state == "sent" and sent.waits == pytest.approx((4.5, 0.0, 2.5, 0.5))
    retried = decide(
        ITEM, TransientError("server_error", "451"), T0 + 11, False, POLICY, random.Random(1), before
    )
    assert retried.state == "deferred" and retried.waits == pytest.approx((4.5, 10.5, 2.5, 0.0))
    assert decide(ITEM, Receipt("<m1>", "250 ok"), T0 + 11, False, POLICY, random.Random(1)).waits == (0,) * 4


def test_miss_cause_names_the_dominant_wait_or_what_held_the_rest() -> None:
    late = {"delays": {"queue": 1.0, "throttle": 5.0}, "delays_over": {"basis": "late", "deliveries": 3}}
    slowest = {"delays": {"quiet_hours": 9.0}, "delays_over": {"basis": "slowest", "deliveries": 1}}
    assert miss_cause({"sla": {**late, "met": False}}) == "throttle"
    assert miss_cause({"sla": {**late, "met": True}}) is None
    assert miss_cause({"sla": {**slowest, "met": False}, "channels_down": {"sms": "down"}}) == "channel_down"
    assert miss_cause({"sla": {**slowest, "met": False}, "left": 0}) == "unreached"


def test_status_why_names_the_throttle_of_a_throttled_fan_out(
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path, extra='[sla.info]\ndeliver_within = "1s"\n')
    # 12 emails take ~12 s; the deadline is 1 s. The throttle's waits add up to ~66 s, far above the
    # queue's (the command's own start-up until its first claim, per delivery) even on a loaded machine.
    throttled = {"HERALD_SMTP__RATE_PER_SECOND": "1", "HERALD_SMTP__MAX_CONNECTIONS": "64"}
    sent = announce(cli, config, "--audience", "everyone", "--title", "Slow", env=throttled)
    assert sent.exit_code == 1, sent.stderr  # missed
    final = json.loads(sent.stdout)
    assert final["channels"]["email"]["sent"] == 12
    delays, over = final["sla"]["delays"], final["sla"]["delays_over"]
    assert set(delays) == set(CAUSES)
    assert over["basis"] == "late" and over["deliveries"] >= 4
    assert dominant(delays) == "throttle", (final["sla"], delays)
    assert delays["quiet_hours"] == delays["retry"] == delays["channel_down"] == 0.0
    assert delays["provider"] > 0
    # The waits are kept per delivery: the claim and the hand-over, the throttle wait of each.
    kept = rows(
        db_url,
        "SELECT claimed_at, sent_at, wait_throttle FROM delivery WHERE notification_id = :n",
        n=final["id"],
    )
    assert all(claimed is not None and claimed <= sent_at for claimed, sent_at, _ in kept)
    assert max(wait for _, _, wait in kept) > 1.0

    why = cli("status", final["id"], "--why", "--config", config)
    assert why.exit_code == 0, why.stderr
    text = why.stdout
    assert "handed over after the deadline" in text
    causes = text.split("in all:\n", 1)[1].splitlines()
    assert "throttle" in causes[0]  # the dominant cause comes first
    assert "Slowest deliveries" in text and "mostly throttle" in text

    as_json = json.loads(cli("status", final["id"], "--why", "--json", "--config", config).stdout)
    assert as_json["sla"]["delays"] == delays
    slowest = as_json["slowest"]
    assert len(slowest) == 5
    assert slowest[0]["channel"] == "email" and slowest[0]["name"].startswith("Person ")
    assert slowest[0]["cause"] == "throttle"
    assert slowest[0]["total_s"] >= slowest[-1]["total_s"] > 1.0

    report = cli("report", "--json", "--config", config)
    assert report.exit_code == 0, report.stderr
    summary = json.loads(report.stdout)
    assert summary["sla"]["causes"] == {"throttle": 1}
    assert [item["sla"]["cause"] for item in summary["items"]] == ["throttle"]
    assert "late: throttle" in cli("report", "--config", config).stdout


def test_a_retried_delivery_keeps_its_retry_wait(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    peers.smtp.fail("rcpt", "451 4.3.0 try again later", address="p2@example.com", times=1)
    fast = {"HERALD_DISPATCHER__POLL_INTERVAL": "0.1s", "HERALD_DISPATCHER__RETRY_BASE": "0.2s"}
    sent = announce(cli, config, "--audience", "person:p2@example.com", "--title", "Retry", env=fast)
    assert sent.exit_code == 0, sent.stderr
    final = json.loads(sent.stdout)
    assert final["sla"]["delays_over"] == {"basis": "slowest", "deliveries": 1}
    assert final["sla"]["delays"]["retry"] >= 0.16  # the backoff: 0.2 s less its jitter at most
    why = json.loads(cli("status", final["id"], "--why", "--json", "--config", config).stdout)
    assert why["slowest"][0]["person"] == "p2" and why["slowest"][0]["delays"]["retry"] >= 0.16


async def test_status_why_names_quiet_hours(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = quiet_config(peers, db_url, tmp_path)
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE, encoding="utf-8")
    imported = await asyncio.to_thread(cli, "directory", "import", str(people), "--config", str(config))
    assert imported.exit_code == 0
    clock = ManualClock(at("2026-01-15 23:00"))
    herald = Herald.build(load_settings(config), clock=clock)
    with herald.store.session() as session:
        session.add(PersonSettings(person_id="nightowl", quiet_mode="off"))
        session.commit()
    info = create(herald, "info", "Info")  # Berlin's morning is 8 h away; its deadline 24 h
    try:
        await dispatch_until(herald, lambda: len(peers.smtp.messages) >= 2)  # New York, the night owl
        clock.advance(at("2026-01-16 07:00") - clock.now())  # Berlin's morning
        await dispatch_until(herald, lambda: len(peers.smtp.messages) >= 4)
        clock.advance(at("2026-01-16 07:00", UTC) - clock.now())  # UTC's morning, an hour later
        await dispatch_until(herald, lambda: len(peers.smtp.messages) >= 5)
    finally:
        await herald.aclose()
    why = await asyncio.to_thread(cli, "status", info, "--why", "--json", "--config", str(config))
    found = json.loads(why.stdout)
    assert found["sla"]["met"] is True
    assert found["sla"]["delays_over"] == {"basis": "slowest", "deliveries": 1}
    assert dominant(found["sla"]["delays"]) == "quiet_hours"
    assert found["sla"]["delays"]["quiet_hours"] == pytest.approx(9 * 3600, abs=60)  # 22:00 to 07:00 UTC
    assert found["slowest"][0]["person"] == "nowhere" and found["slowest"][0]["cause"] == "quiet_hours"
    text = (await asyncio.to_thread(cli, "status", info, "--why", "--config", str(config))).stdout
    assert "nothing was handed over late; the slowest 1 % (1 delivery)" in text
    assert "quiet hours" in text.split("in all:\n", 1)[1].splitlines()[0]
