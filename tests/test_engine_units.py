"""Parts of the engine, as tables where pure: outcome decisions, backoff, the token bucket, the forecast,
and writing a keyed notification once."""

from __future__ import annotations

import itertools
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.directory.audience import parse_audience
from bot.directory.audience_sql import audience_condition
from bot.directory.records import PersonRecord
from bot.directory.store import import_people
from bot.engine.create import (
    DELIVERY,
    NOTIFICATION,
    NewNotification,
    ensure_notification,
    new_notification_id,
)
from bot.engine.forecast import ChannelLoad, drain_seconds, forecast
from bot.engine.health import Breaker, Outage
from bot.engine.ledger import Claimed
from bot.engine.outcomes import RetryPolicy, backoff, decide
from bot.engine.shares import Slots, fair_share
from bot.engine.throttle import Pacer
from bot.store import Store
from channels.base import (
    ChannelDownError,
    DeliveryError,
    PermanentError,
    Receipt,
    TransientError,
    UncertainError,
)

NOW = 1_800_000_000.0
ITEM = Claimed(
    id=7,
    notification_id="n1",
    person_id="p1",
    channel="sms",
    address="+4915112345000",
    deadline=NOW + 60,
    attempts=1,
    created_at=NOW - 10,
)
POLICY = RetryPolicy(retry_for=3600, base=10, cap=900, max_unknown=3, jitter=0.0)


@pytest.mark.parametrize(
    ("result", "severity", "item", "state", "attempt", "suppress", "due_in"),
    [
        (Receipt("SM1", "queued"), "info", ITEM, "sent", "sent", False, None),
        (
            PermanentError("invalid_address", "21211", suppress=True),
            "info",
            ITEM,
            "failed",
            "permanent",
            True,
            None,
        ),
        (PermanentError("config", "21408"), "critical", ITEM, "failed", "permanent", False, None),
        (TransientError("server_error", "500"), "info", ITEM, "deferred", "transient", False, 10.0),
        (
            TransientError("rate_limited", "429", retry_after=3),
            "info",
            ITEM,
            "deferred",
            "transient",
            False,
            3.0,
        ),
        (
            TransientError("server_error"),
            "info",
            Claimed(7, "n1", "p1", "sms", "+49151", NOW + 60, 3, NOW - 10),
            "deferred",
            "transient",
            False,
            40.0,
        ),
        # retry window over: expired
        (
            TransientError("network"),
            "info",
            Claimed(7, "n1", "p1", "sms", "+49151", NOW, 2, NOW - 3595),
            "expired",
            "transient",
            False,
            None,
        ),
        # unknown errors get a small cap
        (
            TransientError("unknown"),
            "info",
            Claimed(7, "n1", "p1", "sms", "+49151", NOW, 3, NOW),
            "failed",
            "transient",
            False,
            None,
        ),
        (
            TransientError("unknown"),
            "info",
            Claimed(7, "n1", "p1", "sms", "+49151", NOW, 2, NOW),
            "deferred",
            "transient",
            False,
            20.0,
        ),
        # uncertain: urgent kinds re-send, others never send twice
        (UncertainError("timeout"), "critical", ITEM, "deferred", "uncertain", False, 10.0),
        (UncertainError("timeout"), "maintenance", ITEM, "sent", "uncertain", False, None),
    ],
)
def test_decide(
    result: Receipt | DeliveryError,
    severity: str,
    item: Claimed,
    state: str,
    attempt: str,
    suppress: bool,
    due_in: float | None,
) -> None:
    urgent = load_settings().is_mandatory(severity)  # the default [kinds] mandatory
    outcome = decide(item, result, NOW, urgent, POLICY, random.Random(1))
    assert (outcome.state, outcome.attempt, outcome.suppress) == (state, attempt, suppress)
    assert outcome.notification_id == "n1"
    if due_in is None:
        assert outcome.due_at is None
    else:
        assert outcome.due_at == pytest.approx(NOW + due_in)


def test_backoff_grows_caps_and_jitters() -> None:
    policy = RetryPolicy(retry_for=1e9, base=10, cap=100, jitter=0.2)
    rng = random.Random(3)
    delays = [backoff(n, policy, rng) for n in range(1, 9)]
    assert 8 <= delays[0] <= 12
    assert 16 <= delays[1] <= 24
    assert all(80 <= d <= 120 for d in delays[4:])
    assert len({round(d, 6) for d in delays}) == len(delays)


def busiest_second(starts: list[float]) -> int:
    return max(sum(1 for t in starts if first <= t < first + 1.0) for first in starts)


async def test_pacer_never_exceeds_rate_in_any_second(store: Store) -> None:
    clock = ManualClock(NOW)
    pacer = Pacer(store, "email", rate=10, burst=0, clock=clock)
    starts = []
    for _ in range(45):
        await pacer.take()
        starts.append(clock.now())
    assert busiest_second(starts) <= 10
    assert starts[-1] - starts[0] == pytest.approx(4.4, abs=1e-3)


async def test_two_workers_share_one_rate(store: Store) -> None:
    clock = ManualClock(NOW)
    workers = [Pacer(store, "sms", rate=10, burst=0, clock=clock) for _ in range(2)]
    starts = []
    for index in range(40):
        await workers[index % 2].take()
        starts.append(clock.now())
    assert busiest_second(starts) <= 10
    assert starts[-1] - starts[0] >= 3.8


async def test_pacer_charges_sms_segments_and_pauses_everyone(store: Store) -> None:
    clock = ManualClock(NOW)
    pacer = Pacer(store, "sms", rate=2, burst=0, clock=clock)
    other = Pacer(store, "sms", rate=2, burst=0, clock=clock)
    await pacer.take(3)  # a 3-segment SMS uses three slots...
    await pacer.take(1)  # ...so the next message starts 1.5 s later
    assert clock.now() - NOW == pytest.approx(1.5, abs=1e-3)
    await pacer.pause(5)  # a 429 seen by one worker...
    before = clock.now()
    await other.take(1)  # ...holds the other too
    assert clock.now() - before >= 5 - 1e-3


async def test_unlimited_pacer_never_waits_but_honours_back_pressure(store: Store) -> None:
    clock = ManualClock(NOW)
    pacer = Pacer(store, "email", rate=0, burst=0, clock=clock)
    for _ in range(100):
        await pacer.take()
    assert clock.now() == NOW and pacer.clear()  # the runner skips take() while clear
    await pacer.pause(2)
    assert not pacer.clear()
    await pacer.take()
    assert clock.now() == pytest.approx(NOW + 2) and pacer.clear()
    assert not Pacer(store, "email", rate=10, burst=0, clock=clock).clear()  # throttled: always take()


def test_slots_are_taken_at_once_only_while_free() -> None:
    slots = Slots(2)
    assert slots.take() and slots.take() and not slots.take()
    slots.release()
    assert slots.take() and slots.held == 2
    slots.resize(3)
    assert slots.take() and not slots.take() and slots.held == 3


def test_the_breaker_observes_only_outages_probes_and_channel_down_errors(store: Store) -> None:
    breaker = Breaker(Herald(load_settings(), store, ManualClock(NOW)), "email")
    sent, refused = Receipt("id"), PermanentError("rejected_recipient")
    assert not breaker.concerned(1, sent) and not breaker.concerned(1, refused)
    assert breaker.concerned(1, ChannelDownError("auth", "535"))
    breaker.probing = 1
    assert breaker.concerned(1, sent) and not breaker.concerned(2, sent)
    breaker.probing, breaker.outage = None, Outage("email", NOW, "auth", "535", NOW + 2)
    assert breaker.concerned(2, sent)


async def test_back_pressure_reaches_unthrottled_workers_through_the_database(store: Store) -> None:
    clock = ManualClock(NOW)
    seen, other = (Pacer(store, "sms", rate=0, burst=0, clock=clock) for _ in range(2))
    await other.refresh()
    await other.take()
    assert clock.now() == NOW  # nothing stored: no wait, no row needed
    await seen.pause(3)  # a 429 with Retry-After: 3 met by one worker...
    await other.refresh()
    await other.take()  # ...holds the other once it has looked
    assert clock.now() == pytest.approx(NOW + 3)
    await other.refresh()
    await other.take()
    assert clock.now() == pytest.approx(NOW + 3)  # a pause that has passed holds no one


@pytest.mark.parametrize(
    ("load", "seconds"),
    [
        (ChannelLoad("email", messages=0, rate=10), 0.0),
        (ChannelLoad("email", messages=101, rate=10), 10.0),
        (ChannelLoad("email", messages=51, ahead=50, rate=10), 10.0),
        (ChannelLoad("sms", messages=51, cost=2, rate=10), 10.1),
        (ChannelLoad("email", messages=1000, rate=0, concurrency=4, latency=0.02), 5.0),
        (ChannelLoad("email", messages=1000, rate=1000, concurrency=4, latency=0.02), 5.0),
        (ChannelLoad("email", messages=150, rate=0, cap_room=100, daily_cap=100, latency=0.0), 86400.0),
    ],
)
def test_drain_seconds(load: ChannelLoad, seconds: float) -> None:
    assert drain_seconds(load) == pytest.approx(seconds)


def test_forecast_takes_the_slowest_channel_and_judges_the_deadline() -> None:
    loads = [ChannelLoad("email", messages=101, rate=10), ChannelLoad("sms", messages=21, rate=1)]
    result = forecast(loads, NOW, NOW + 15)
    assert result.seconds == pytest.approx(20.0)
    assert result.meets is False
    assert forecast(loads, NOW, NOW + 25).meets is True


@pytest.mark.parametrize(
    ("total", "members", "me", "share"),
    [
        (4, ["a"], "a", 4),
        (4, [], "a", 4),  # a dispatcher not (yet) in the worker table counts itself
        (4, ["a", "b"], "b", 2),
        (5, ["b", "a"], "a", 3),  # the remainder goes to the first ids in sorted order
        (5, ["b", "a"], "b", 2),
        (2, ["a", "b", "c"], "c", 0),  # more dispatchers than connections: the last waits
        (2, ["a", "b"], "z", 0),
    ],
)
def test_fair_share_of_the_connection_budget(total: int, members: list[str], me: str, share: int) -> None:
    assert fair_share(total, members, me) == share
    everyone = sorted(set(members) | {me})
    assert sum(fair_share(total, everyone, m) for m in everyone) == total


def keyed(key: str | None) -> NewNotification:
    return NewNotification(
        id=new_notification_id(), kind="announcement", severity="info", title="t", body="b",
        audience="everyone", channels=("email", "sms"), created_by="test", created_at=NOW, start_at=NOW,
        deadline=NOW + 60, idempotency_key=key,
    )  # fmt: skip


def test_a_key_is_written_once_and_unkeyed_notifications_every_time(store: Store) -> None:
    import_people(store, [PersonRecord(id="p1", name="P", email="p1@example.com")])
    everyone = audience_condition(parse_audience("everyone"))
    first, again = keyed("k1"), keyed("k1")
    assert ensure_notification(store, first, everyone) == (first.id, 1)
    assert ensure_notification(store, again, everyone) == (first.id, None)
    plain = [ensure_notification(store, keyed(None), everyone) for _ in range(2)]
    assert [recipients for _, recipients in plain] == [1, 1] and plain[0][0] != plain[1][0]
    with store.begin() as connection:
        per_notification = connection.execute(
            select(DELIVERY.c.notification_id, func.count()).group_by(DELIVERY.c.notification_id)
        ).all()
    assert sorted(count for _, count in per_notification) == [2, 2, 2]  # email + sms (no phone: suppressed)


def test_concurrent_writers_of_one_key_store_it_once(store: Store) -> None:
    import_people(store, [PersonRecord(id="p1", name="P", email="p1@example.com")])
    everyone = audience_condition(parse_audience("everyone"))
    # Both writers pass the look-up before either inserts, so the database settles the race.
    barrier = threading.Barrier(2, timeout=10)
    held = itertools.count()

    @event.listens_for(store.engine, "before_cursor_execute")
    def meet(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO NOTIFICATION ") and next(held) < 2:
            barrier.wait()

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda n: ensure_notification(store, n, everyone), [keyed("k"), keyed("k")]))
    ids = {notification_id for notification_id, _ in results}
    assert len(ids) == 1
    assert sorted(recipients is None for _, recipients in results) == [False, True]  # one wrote, one found
    with store.begin() as connection:
        assert connection.execute(select(func.count()).select_from(NOTIFICATION)).scalar_one() == 1
