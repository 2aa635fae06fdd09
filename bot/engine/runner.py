"""One channel's half of the dispatcher: claim due deliveries and drive each through the stages.

Each loop claims a quarter second's worth of due deliveries (earliest deadline first, so a critical
notice created mid-way through a large maintenance notice goes next; while a batch is being
started, more urgent work that became due makes it give back its rest: :mod:`bot.engine.urgent`)
and drives each through the stages of :mod:`bot.engine.stages`: cancel check, slot (at most the
channel's concurrency in flight), pace (a throttle slot per cost unit: per SMS segment), lease
check, send, decide (:mod:`bot.engine.outcomes`), record (group commit). The claimed batch is a
cache of leased rows; on stop the unsent ones are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable
from enum import Enum

from sqlalchemy.exc import SQLAlchemyError

from bot.app import Herald
from bot.channel_specs import spec
from bot.engine import caps, ledger, urgent
from bot.engine.health import Breaker, OutageNotifier, hold_due
from bot.engine.ledger import Claimed
from bot.engine.loop_claims import loop_claimer
from bot.engine.loop_writes import checkpoint
from bot.engine.outcomes import RetryPolicy, decide
from bot.engine.shares import ConnectionShare, Slots, fair_share
from bot.engine.stages import ChannelStats, GroupCommit, Notices, PreparedNotice, send_one
from bot.engine.throttle import Pacer
from bot.engine.timings import Waits
from bot.store import database_reason
from channels.base import BACK_PRESSURE, TransientError

log = logging.getLogger("herald.dispatcher")

FLUSH_EVERY = 0.1
RECLAIM_EVERY = 5.0
FINISH_EVERY = 0.5
CHECKPOINT_EVERY = 0.5  # SQLite: copy what the loop wrote to the WAL into the database, in a thread

# An unthrottled claim holds this many seconds of sends: the longer, the fewer claims; the shorter,
# the less a worker holds unstarted while the others run dry at the end of a fan-out.
CLAIM_SECONDS = 0.25


class _Start(Enum):
    """What the start stages made of one claimed delivery."""

    STARTED = "started"
    GIVE_BACK = "give back"  # released unsent: cancelled, or too close to the end of the lease
    STOP = "stop"  # stopping, or no slot any more: the rest of the batch goes back


class ChannelRunner:
    """Claims and sends one channel's deliveries for this dispatcher (see the module docstring)."""

    def __init__(
        self, herald: Herald, worker_id: str, name: str, notify: OutageNotifier | None = None
    ) -> None:
        self.herald = herald
        self.worker_id = worker_id
        self.name = name
        self.spec = spec(name)
        settings = herald.settings
        section = self.spec.settings(settings)
        self.pacer = Pacer(herald.store, name, section.rate_per_second, section.burst, herald.clock)
        self.daily_cap = section.daily_cap
        self.policy = RetryPolicy(
            retry_for=section.retry_for,
            base=settings.dispatcher.retry_base,
            cap=settings.dispatcher.retry_cap,
            max_unknown=settings.dispatcher.max_attempts_unknown,
        )
        self.concurrency = self.spec.concurrency(settings)
        # A cluster-wide connection budget (smtp.max_connections) is shared out between dispatchers;
        # requests in flight (twilio.max_concurrency) are per worker. A shared channel starts with no
        # slots on PostgreSQL until the dispatcher's first rebalance.
        shared = self.spec.cluster_connections
        self.share = ConnectionShare(herald.store, self.concurrency) if shared else None
        self.send_timeout = section.timeout
        self.peers = 1  # live dispatchers sharing the channel's rate (refreshed by the heartbeat)
        self.slots = Slots(0 if self.share is not None and not herald.store.is_sqlite else self.concurrency)
        self.rng = random.Random()
        self.in_flight: set[asyncio.Task[None]] = set()
        self.notices = Notices(herald, self.spec)
        self.commit = GroupCommit(herald, name, worker_id, self.slots.release)
        self.claimer = loop_claimer(herald.store)  # no thread hand-off per claim
        self.stats = ChannelStats()
        self.wake = asyncio.Event()
        self.db_backoff = 0.0
        self.breaker = Breaker(herald, name, notify)
        self.waits = Waits(herald.clock.now())  # why deliveries were late (bot.engine.timings)

        # Set by the dispatcher's heartbeat (bot.engine.workers): no send starts after claims_until,
        # and a batch claimed before the epoch changed (this dispatcher was reaped) is given back.
        self.claims_until = math.inf
        self.epoch = 0

    def claim_size(self) -> int:
        """A claim's worth of deliveries, within ``batch_size``.

        Throttled: the cluster's rate is shared by every live dispatcher, so a worker claims its share.
        Unthrottled: what ``concurrency`` sends finish in ``CLAIM_SECONDS`` at the recently measured
        latency, so that workers share a notification evenly instead of one holding a large batch
        while the others are idle.
        """
        batch = self.herald.settings.dispatcher.batch_size
        if self.pacer.unlimited:
            recent = self.stats.latencies[-200:]
            latency = sum(recent) / len(recent) if recent else 0.01
            slots = max(1, self.slots.capacity)
            return max(slots, min(batch, int(slots / max(latency, 1e-4) * CLAIM_SECONDS)))
        share = self.pacer.rate / max(1, self.peers)
        return max(1, min(batch, int(share * 0.5) + 1))

    def _cap_today(self, now: float) -> int | None:
        """Today's most sends on this channel, cluster-wide (None: no cap). Checked inside the claim.

        The smaller of ``daily_cap`` and the warm-up ramp's cap for today (:mod:`bot.engine.caps`).
        """
        ramp = caps.schedule(self.herald.settings, self.name)
        return caps.cap_today(self.herald.store, self.name, now, self.daily_cap, ramp)

    async def rebalance(self, members: list[str]) -> None:
        """Take this dispatcher's fair share of the cluster's connections (see :mod:`bot.engine.shares`)."""
        if self.share is None:
            return
        target = fair_share(self.concurrency, members, self.worker_id)
        self.slots.resize(min(target, self.slots.capacity))
        # Idle connections beyond the share close before their locks go to another dispatcher.
        await self.herald.channel(self.name).limit_connections(max(target, self.slots.held))
        held = await asyncio.to_thread(self.share.rebalance, target, self.slots.held)
        self.slots.resize(min(target, held))

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and send until ``stop``; then finish what is in flight and record every outcome."""
        with contextlib.suppress(SQLAlchemyError):  # else the first bookkeeping round reads it
            await self.breaker.refresh()
        helpers = [asyncio.create_task(self._bookkeeping(stop)), asyncio.create_task(self.commit.run())]
        ahead: asyncio.Task[tuple[float, list[Claimed]]] | None = None
        try:
            while not stop.is_set():
                ahead = await self._cycle(stop, ahead)
            await self._release_ahead(ahead)
        finally:
            await self._wind_down(helpers)

    async def _cycle(
        self, stop: asyncio.Event, ahead: asyncio.Task[tuple[float, list[Claimed]]] | None
    ) -> asyncio.Task[tuple[float, list[Claimed]]] | None:
        """One claim and its sends; returns the next claim when it was started ahead."""
        poll = self.herald.settings.dispatcher.poll_interval
        outage = self.breaker.outage
        self.waits.follow(outage.since if outage is not None else None, self.herald.clock.now())
        if ahead is None and self.slots.capacity == 0:
            # No share of the cluster's connections (yet): claim nothing we could not send, and look
            # again at the next poll (a wake-up cannot help before a share comes).
            self.wake.clear()
            await self._idle(stop, poll)
            return None
        if self.breaker.outage is not None and ahead is None:
            await self._probe(stop)
            return None
        try:
            now, batch = await (ahead or asyncio.create_task(self._claim()))
        except SQLAlchemyError as exc:
            await self._database_down(stop, "claiming", exc)
            return None
        if not batch:
            await self._idle(stop, poll)
            return None
        next_claim: list[asyncio.Task[tuple[float, list[Claimed]]]] = []

        def claim_ahead() -> None:
            next_claim.append(asyncio.create_task(self._claim()))

        # Unthrottled, the next batch is claimed while the last sends of this one go out, so the pipe
        # never runs dry; not earlier, or a worker holding unstarted claims idles the others at the
        # end of a fan-out. (A throttled channel waits on its pace anyway; claiming ahead would only
        # delay a more urgent notice queued meanwhile.)
        lease_until = now + self.herald.settings.dispatcher.lease
        try:
            await self._send_batch(batch, stop, lease_until, claim_ahead if self.pacer.unlimited else None)
        except SQLAlchemyError as exc:
            # What was not started stays leased; the cluster takes it over after the lease.
            await self._database_down(stop, "sending a batch", exc)
            return None
        self.db_backoff = 0.0
        return next_claim[0] if next_claim else None

    async def _probe(self, stop: asyncio.Event) -> None:
        """While the channel is down: send one held delivery when this dispatcher holds the probe."""
        lease = self.herald.settings.dispatcher.lease
        wait = await self.breaker.take_probe(lease)
        if wait > 0:
            await self._idle(stop, min(wait, self.herald.settings.dispatcher.poll_interval))
            return
        now, batch = await self._claim(most=1)
        if batch:
            self.breaker.probing = batch[0].id
            await self._send_batch(batch, stop, now + lease)
            while self.breaker.probing is not None and self.in_flight and not stop.is_set():
                await asyncio.wait(set(self.in_flight))

    async def _release_ahead(self, ahead: asyncio.Task[tuple[float, list[Claimed]]] | None) -> None:
        if ahead is None:
            return
        with contextlib.suppress(SQLAlchemyError):  # unreleased claims wait out their lease
            _, unsent = await ahead
            await self._release([c.id for c in unsent])

    async def _wind_down(self, helpers: list[asyncio.Task[None]]) -> None:
        if self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)
        async with self.commit.writing:  # never cancel a write half-way
            for task in helpers:
                task.cancel()
        for task in helpers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        finally:
            await self.commit.close()
            await self.claimer.close()

    async def _claim(self, most: int | None = None) -> tuple[float, list[Claimed]]:
        self.wake.clear()  # a wake-up from now on means work this claim may not see
        now = self.herald.clock.now()
        self.waits.note_claim(now, self.pacer.waited)
        lease, limit = self.herald.settings.dispatcher.lease, most or self.claim_size()
        cap = self._cap_today(now)
        batch = await self.claimer.claim(self.name, self.worker_id, now, lease, limit, cap)
        if batch is None:  # the database is busy (or, on PostgreSQL, a capped claim): a thread waits
            batch = await asyncio.to_thread(
                ledger.claim, self.herald.store, self.name, self.worker_id, now, lease, limit, cap
            )
        return now, batch

    async def _release(self, ids: list[int]) -> None:
        await asyncio.to_thread(
            ledger.release, self.herald.store, self.worker_id, self.herald.clock.now(), ids
        )

    async def _database_down(self, stop: asyncio.Event, doing: str, exc: SQLAlchemyError) -> None:
        """Log a failed database call and wait, longer each time in a row (0.5 s doubling to 8 s)."""
        self.db_backoff = min(max(self.db_backoff * 2, 0.5), 8.0)
        log.warning(
            "%s: %s failed (%s); retrying in %.1fs", self.name, doing, database_reason(exc), self.db_backoff
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.db_backoff)

    async def _idle(self, stop: asyncio.Event, seconds: float) -> None:
        """Until ``stop``, a wake-up (new work announced since the last claim began) or ``seconds``."""
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _send_batch(
        self,
        batch: list[Claimed],
        stop: asyncio.Event,
        lease_until: float,
        claim_ahead: Callable[[], None] | None = None,
    ) -> None:
        """Start a send per claimed delivery as slots and pace allow; ``claim_ahead`` is called once
        when what is left to start fits in the slots (about one send latency before the batch ends)."""
        await self.notices.load({item.notification_id for item in batch})
        give_back: list[int] = []
        ahead_at = max(0, len(batch) - self.slots.capacity)
        epoch, checked = self.epoch, self.herald.clock.now()
        for index, item in enumerate(batch):
            if index == ahead_at and claim_ahead is not None:
                claim_ahead()
            if self.herald.clock.now() - checked >= urgent.CHECK_EVERY:
                checked = self.herald.clock.now()
                if await self._overtaken(item, checked):
                    give_back.extend(claimed.id for claimed in batch[index:])
                    break
            # Reaped meanwhile (see bot.engine.workers): the rest is another dispatcher's now.
            verdict = await self._start(item, stop, lease_until) if epoch == self.epoch else _Start.STOP
            if verdict is _Start.STOP:
                give_back.extend(claimed.id for claimed in batch[index:])
                break
            if verdict is _Start.GIVE_BACK:
                give_back.append(item.id)
        if give_back:
            await self._release(give_back)
            if self.breaker.outage is not None:
                await asyncio.to_thread(hold_due, self.herald.store, self.name, self.herald.clock.now())

    async def _overtaken(self, item: Claimed, now: float) -> bool:
        """A delivery due before ``item``'s deadline was queued after this batch was claimed (a critical
        notice mid-way through a maintenance fan-out): the rest of the batch goes back, and the next
        claim takes it first (see :mod:`bot.engine.urgent`)."""
        return await asyncio.to_thread(urgent.waiting, self.herald.store, self.name, now, item.deadline)

    async def _start(self, item: Claimed, stop: asyncio.Event, lease_until: float) -> _Start:
        """Cancel check, slot, pace and lease check for one delivery; then its send runs on its own."""
        if stop.is_set():
            return _Start.STOP
        if item.notification_id in self.notices.cancelled:
            return _Start.GIVE_BACK  # released as cancelled: stop what has not been sent
        if self.breaker.holds(item.id):
            return _Start.STOP  # the channel went down: nothing more starts but the probe
        notice = self.notices[item.notification_id, item.language]
        if not (self.slots.take() or await self.slots.acquire()):
            return _Start.STOP  # this dispatcher's connection share went to others: they send the rest
        if not self.pacer.clear():
            await self.pacer.take(notice.prepared.cost)
            self.stats.throttle_wait = self.pacer.waited
        now = self.herald.clock.now()
        if now + self.send_timeout >= lease_until or now >= self.claims_until:
            # Too close to the end of the lease (after waiting for a slot and the pace): another
            # worker may take it over mid-send.
            self.slots.release()
            return _Start.GIVE_BACK
        task = asyncio.get_running_loop().create_task(self._send_one(item, notice, self.pacer.waited))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        return _Start.STARTED

    async def _send_one(self, item: Claimed, notice: PreparedNotice, waited: float) -> None:
        """Send, decide, record (with its waits; ``waited``: the pacer's wait so far). The slot stays
        taken until the outcome is in the ledger (see :class:`GroupCommit`): a process killed now
        repeats at most what is in flight."""
        started = self.herald.clock.now()
        try:
            result = await send_one(self.herald, self.name, item, notice)
        except BaseException:
            self.slots.release()
            raise
        now = self.herald.clock.now()
        before = self.waits.before(item, started, waited)
        outcome = decide(item, result, now, notice.urgent, self.policy, self.rng, before)
        if isinstance(result, TransientError) and result.reason in BACK_PRESSURE:
            await self.pacer.pause(result.retry_after if result.retry_after is not None else 1.0)
        self.stats.count(outcome, now - started)
        self.commit.add(outcome)
        if self.breaker.concerned(item.id, result):
            await self.breaker.observe(item.id, result)

    async def _bookkeeping(self, stop: asyncio.Event) -> None:
        """Every FLUSH_EVERY: record, finish notifications, follow back-pressure, cancels and leases."""
        last = {"reclaim": 0.0, "finish": 0.0, "checkpoint": 0.0}
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush(finish=False)
            try:
                await self._bookkeep(self.herald.clock.now(), last)
            except SQLAlchemyError as exc:
                log.warning("%s: bookkeeping failed (%s); retrying", self.name, database_reason(exc))
                await asyncio.sleep(1.0)
            if stop.is_set() and not self.in_flight:
                return

    async def _bookkeep(self, now: float, last: dict[str, float]) -> None:
        if now - last["finish"] >= FINISH_EVERY or not self.in_flight:
            # Idle (the last sends are in) or every half second while busy.
            last["finish"] = now
            await self.finish()
            await self.pacer.refresh()  # back-pressure another worker met
        await self.notices.refresh_cancelled()
        await self.breaker.refresh()
        if self.herald.store.is_sqlite and now - last["checkpoint"] >= CHECKPOINT_EVERY:
            last["checkpoint"] = now  # the loop's connections never checkpoint (bot.engine.loop_writes)
            await asyncio.to_thread(checkpoint, self.herald.store)
        if now - last["reclaim"] >= RECLAIM_EVERY:
            last["reclaim"] = now
            await asyncio.to_thread(ledger.reclaim_expired, self.herald.store, now)

    async def flush(self, finish: bool = True) -> None:
        """Record the outcomes gathered so far in one transaction, then free their send slots."""
        await self.commit.write()
        if finish:
            await self.finish()

    async def finish(self) -> None:
        """Mark notifications with nothing left open as done; forget their rendered messages."""
        self.notices.forget(await self.commit.finish())
