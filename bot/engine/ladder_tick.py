"""The rung tick: start each later rung of a channel ladder at its latest safe time.

Run by ``herald serve``'s scheduler (a :class:`~bot.server.Job`, on the leader), by every ``herald
worker`` (:func:`run_ticks`) and by ``announce --wait``, so a ladder climbs whichever processes run. For
each notification with a pending rung it counts the people left, forecasts how long the rung's
channels take to send to them (:mod:`bot.engine.forecast`, with the throttles, caps and queues of
the moment) and starts the rung (:func:`bot.engine.rungs.start`) once the clock reaches
:func:`bot.engine.ladder.latest_start`, or at once when nobody is left. Re-planned every tick, so a
confirmation arriving late moves the start (fewer people left: a shorter send, a later start).

Several processes ticking at once start each rung once: :func:`bot.engine.rungs.start` claims the
rung's row (``started_at`` still NULL) and creates its deliveries in one transaction, so the others'
claims find it started (on PostgreSQL the second UPDATE waits for the first to commit, then matches
nothing) and create nothing. Every worker ticks, not a leader among them: the ticks cost one query
every :data:`TICK_EVERY` while no rung is pending, and no process's death delays a rung.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bot import service
from bot.app import Herald
from bot.engine import rungs
from bot.engine.forecast import forecast
from bot.engine.ladder import latest_start
from bot.engine.rungs import PendingRung
from bot.recipients.rules import delivery_rules
from channels.base import Notice

log = logging.getLogger("herald.ladder")

TICK_EVERY = 2.0  # seconds between rung ticks in serve


def send_seconds(herald: Herald, rung: PendingRung, people: int, now: float) -> float:
    """Forecast seconds to hand the rung's message to ``people`` on each of its channels."""
    mandatory = herald.settings.is_mandatory(rung.severity)
    notice = Notice(
        rung.notification_id, rung.severity, rung.title, rung.body, mandatory, confirm=rung.confirm
    )
    loads = [
        service.channel_load(
            herald, name, people, herald.channel(name).prepare(notice).cost, rung.deadline, now
        )
        for name in rung.channels
    ]
    return forecast(loads, now, rung.deadline).seconds


def starts_at(herald: Herald, rung: PendingRung, people: int, now: float) -> float:
    """When ``rung`` must start to reach ``people`` by its deadline."""
    within = herald.settings.sla_for(rung.severity).deliver_within
    return latest_start(rung.deadline, send_seconds(herald, rung, people, now), within)


def start_due_rungs(herald: Herald) -> list[tuple[str, int, int]]:
    """Start every rung that is due; ``(notification id, rung, people)`` of those started."""
    now = herald.clock.now()
    rules = delivery_rules(herald.settings)
    started = []
    for rung in rungs.pending(herald.store, now):
        left = rungs.count_left(herald.store, rung)
        if left and now < starts_at(herald, rung, left, now):
            continue
        people = rungs.start(herald.store, rung, rules, now)
        if people is not None:
            log.info(
                "%s: rung %d (%s) started for %d people",
                rung.notification_id,
                rung.idx,
                ",".join(rung.channels),
                people,
            )
            started.append((rung.notification_id, rung.idx, people))
    return started


def rung_tick(herald: Herald) -> Callable[[], Awaitable[None]]:
    """The scheduler job for ``herald serve``."""

    async def tick() -> None:
        await asyncio.to_thread(start_due_rungs, herald)

    return tick


async def run_ticks(herald: Herald, stop: asyncio.Event, on_started: Callable[[], None]) -> None:
    """``herald worker``'s rung tick, every :data:`TICK_EVERY` until ``stop``; ``on_started`` wakes
    the dispatcher when a rung created deliveries."""
    while not stop.is_set():
        try:
            if await asyncio.to_thread(start_due_rungs, herald):
                on_started()
        except Exception:
            log.exception("the rung tick failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_EVERY)
