"""The dispatcher: claims due deliveries in deadline order and sends them under the throttles.

One :class:`ChannelRunner` per channel. Each loop: claim about a second's worth of due deliveries
(earliest deadline first, so a critical notice created mid-way through a large maintenance notice
goes next), take a throttle token per message (per segment for SMS), send with at most
``max_connections`` / ``max_concurrency`` in flight, and record outcomes in batches. The database is
the truth: the claimed batch is a cache of leased rows, and on stop the unsent ones are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from bot.app import Herald
from bot.engine import ledger, workers
from bot.engine.ledger import Claimed, Outcome
from bot.engine.listen import listen_for_work
from bot.engine.outcomes import RetryPolicy, decide
from bot.engine.shares import ConnectionShare, Slots, fair_share
from bot.engine.throttle import Pacer
from bot.store import database_reason
from bot.tables import Notification
from channels.base import DeliveryError, Notice, Receipt, Recipient, TransientError

log = logging.getLogger("herald.dispatcher")

FLUSH_EVERY = 0.1
RECLAIM_EVERY = 5.0
FINISH_EVERY = 0.5
SHARES_EVERY = 2.0  # how often a dispatcher follows workers coming and going
# An unthrottled claim holds this many seconds of sends: the longer, the fewer claims; the shorter,
# the less a worker holds unstarted while the others run dry at the end of a fan-out.
CLAIM_SECONDS = 0.25


@dataclass
class _Prepared:
    severity: str
    prepared: object
    cost: int
    unsubscribe: bool  # the message carries each recipient's signed preferences link


@dataclass
class ChannelStats:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    throttle_wait: float = 0.0
    latencies: list[float] = field(default_factory=list)


class ChannelRunner:
    def __init__(self, herald: Herald, worker_id: str, name: str) -> None:
        self.herald = herald
        self.worker_id = worker_id
        self.name = name
        settings = herald.settings
        section = settings.smtp if name == "email" else settings.twilio
        self.pacer = Pacer(herald.store, name, section.rate_per_second, section.burst, herald.clock)
        self.daily_cap = section.daily_cap
        self.policy = RetryPolicy(
            retry_for=section.retry_for,
            base=settings.dispatcher.retry_base,
            cap=settings.dispatcher.retry_cap,
            max_unknown=settings.dispatcher.max_attempts_unknown,
        )
        self.concurrency = herald.concurrency(name)
        # SMTP connections are one budget for the cluster (smtp.max_connections); SMS requests in
        # flight are per worker (twilio.max_concurrency). Email starts with no share on PostgreSQL
        # until the dispatcher's first rebalance.
        self.share = ConnectionShare(herald.store, self.concurrency) if name == "email" else None
        self.send_timeout = section.timeout
        self.peers = 1  # live dispatchers sharing the channel's rate (refreshed by the heartbeat)
        self.slots = Slots(0 if self.share is not None and not herald.store.is_sqlite else self.concurrency)
        self.rng = random.Random()
        self.pending: list[Outcome] = []
        self.in_flight: set[asyncio.Task[None]] = set()
        self.prepared: dict[str, _Prepared] = {}
        self.cancelled: set[str] = set()
        self.touched: set[str] = set()  # notifications with outcomes since the last finish check
        self.outcome_ready = asyncio.Event()
        self.flushing = asyncio.Lock()
        self.stats = ChannelStats()
        self.wake = asyncio.Event()
        self.db_backoff = 0.0

    def claim_size(self) -> int:
        """A claim's worth of deliveries, within ``batch_size``.

        Throttled: the cluster's rate is shared by every live dispatcher, so a worker claims its share.
        Unthrottled: what ``concurrency`` sends finish in ``CLAIM_SECONDS`` at the recently measured
        latency, so that workers
        share a notification evenly instead of one holding a large batch while the others are idle.
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
        from bot.engine import caps as warmup

        ramp = warmup.schedule(self.herald.settings, self.name)
        return warmup.cap_today(self.herald.store, self.name, now, self.daily_cap, ramp)

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
        clock = self.herald.clock
        settings = self.herald.settings.dispatcher
        flusher = asyncio.create_task(self._flush_loop(stop))
        recorder = asyncio.create_task(self._recorder())
        try:
            ahead: asyncio.Task[tuple[float, list[Claimed]]] | None = None
            while not stop.is_set():
                if ahead is None and self.slots.capacity == 0:
                    # No share of the cluster's connections (yet): claim nothing we could not send,
                    # and look again at the next poll (a wake-up cannot help before a share comes).
                    self.wake.clear()
                    await self._idle(stop, settings.poll_interval)
                    continue
                try:
                    now, batch = await (ahead or asyncio.create_task(self._claim()))
                except SQLAlchemyError as exc:
                    ahead = None
                    await self._database_down(stop, "claiming", exc)
                    continue
                ahead = None
                if not batch:
                    await self._idle(stop, settings.poll_interval)
                    continue
                claim_ahead = None
                if self.pacer.unlimited:
                    # Claim the next batch while the last sends of this one go out, so the pipe never
                    # runs dry. Not earlier: a worker holding unstarted claims makes the others idle at
                    # the end of a fan-out. (A throttled channel waits on its pace anyway; claiming
                    # ahead would only delay a more urgent notice queued meanwhile.)
                    def claim_ahead() -> None:
                        nonlocal ahead
                        ahead = asyncio.create_task(self._claim())

                try:
                    await self._send_batch(batch, stop, now + settings.lease, claim_ahead)
                except SQLAlchemyError as exc:
                    # What was not started stays leased; the cluster takes it over after the lease.
                    await self._database_down(stop, "sending a batch", exc)
                    continue
                self.db_backoff = 0.0
            if ahead is not None:
                with contextlib.suppress(SQLAlchemyError):  # unreleased claims wait out their lease
                    _, unsent = await ahead
                    await asyncio.to_thread(
                        ledger.release, self.herald.store, self.worker_id, clock.now(), [c.id for c in unsent]
                    )
        finally:
            if self.in_flight:
                await asyncio.gather(*self.in_flight, return_exceptions=True)
            async with self.flushing:  # never cancel a write half-way
                for task in (flusher, recorder):
                    task.cancel()
            for task in (flusher, recorder):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.flush()

    async def _claim(self) -> tuple[float, list[Claimed]]:
        self.wake.clear()  # a wake-up from now on means work this claim may not see
        now = self.herald.clock.now()
        batch = await asyncio.to_thread(
            ledger.claim,
            self.herald.store,
            self.name,
            self.worker_id,
            now,
            self.herald.settings.dispatcher.lease,
            self.claim_size(),
            self._cap_today(now),
        )
        return now, batch

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
        await self._load_notices({item.notification_id for item in batch})
        give_back: list[int] = []
        ahead_at = max(0, len(batch) - self.slots.capacity)
        for index, item in enumerate(batch):
            if index == ahead_at and claim_ahead is not None:
                claim_ahead()
            if stop.is_set():
                give_back.extend(claimed.id for claimed in batch[index:])
                break
            if item.notification_id in self.cancelled:
                give_back.append(item.id)  # released as cancelled: stop what has not been sent
                continue
            notice = self.prepared[item.notification_id]
            if not await self.slots.acquire():
                # This dispatcher's connection share went to others: they send the rest.
                give_back.extend(claimed.id for claimed in batch[index:])
                break
            await self.pacer.take(notice.cost)
            self.stats.throttle_wait = self.pacer.waited
            if self.herald.clock.now() + self.send_timeout >= lease_until:
                # Too close to the end of the lease (after waiting for a slot and the pace): another
                # worker may take it over mid-send.
                self.slots.release()
                give_back.append(item.id)
                continue
            task = asyncio.create_task(self._send_one(item, notice))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        if give_back:
            await asyncio.to_thread(
                ledger.release, self.herald.store, self.worker_id, self.herald.clock.now(), give_back
            )

    async def _send_one(self, item: Claimed, notice: _Prepared) -> None:
        clock = self.herald.clock
        started = clock.now()
        result: Receipt | DeliveryError
        try:
            recipient = Recipient(
                address=item.address,
                name=item.name,
                person_id=item.person_id,
                unsubscribe_url=self.herald.unsubscribe_url(item.person_id) if notice.unsubscribe else "",
                message_key=f"{item.notification_id}.{item.id}",
            )
            result = await self.herald.channel(self.name).send(notice.prepared, recipient)
        except DeliveryError as exc:
            result = exc
        except Exception as exc:  # a bug in a channel: keep the delivery, log loudly
            log.exception("channel %s raised a non-delivery error", self.name)
            result = TransientError("unknown", f"{type(exc).__name__}: {exc}")
        except BaseException:
            self.slots.release()
            raise
        # The slot stays taken until the outcome is in the ledger (see flush): a process killed now
        # may send again only what is in flight or sent-but-unrecorded, never more than its slots.
        now = clock.now()
        outcome = decide(item, result, now, notice.severity, self.policy, self.rng)
        if isinstance(result, TransientError) and result.reason in ("rate_limited", "busy"):
            await self.pacer.pause(result.retry_after if result.retry_after is not None else 1.0)
        if outcome.state == "sent":
            self.stats.sent += 1
            self.stats.latencies.append(now - started)
            if len(self.stats.latencies) > 20_000:
                del self.stats.latencies[:10_000]
        elif outcome.state == "deferred":
            self.stats.deferred += 1
        else:
            self.stats.failed += 1
        self.pending.append(outcome)
        self.outcome_ready.set()

    async def _load_notices(self, ids: set[str]) -> None:
        missing = ids - self.prepared.keys()
        if not missing:
            return
        if len(self.prepared) > 1000:
            self.prepared.clear()  # a bound for long-running processes; prepared again on demand
            missing = ids

        def load() -> list[Notification]:
            with self.herald.store.session() as session:
                return list(session.exec(select(Notification).where(Notification.id.in_(missing))).scalars())  # type: ignore[attr-defined,call-overload]

        channel = self.herald.channel(self.name)
        for row in await asyncio.to_thread(load):
            meta = json.loads(row.meta or "{}")
            notice = Notice(
                notification_id=row.id,
                severity=row.severity,
                title=row.title,
                body=row.body,
                mandatory=self.herald.settings.is_mandatory(row.severity),
                links={str(k): str(v) for k, v in (meta.get("links") or {}).items()},
            )
            prepared = channel.prepare(notice)
            cost = int(getattr(prepared, "segments", 1) or 1)
            # Only mail links to the preferences page (SMS opt-out is a STOP reply); mandatory kinds
            # never do. Signing a link per recipient costs an HMAC, so it is skipped when unused.
            unsubscribe = self.name == "email" and not notice.mandatory
            self.prepared[row.id] = _Prepared(row.severity, prepared, cost, unsubscribe)

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        clock = self.herald.clock
        last_reclaim = last_finish = 0.0
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush(finish=False)
            now = clock.now()
            try:
                if now - last_finish >= FINISH_EVERY or not self.in_flight:
                    # Idle (the last sends are in) or every half second while busy.
                    last_finish = now
                    await self.finish()
                    await self.pacer.refresh()  # back-pressure another worker met
                if self.prepared:
                    self.cancelled = await asyncio.to_thread(
                        ledger.cancelled_among, self.herald.store, self.prepared
                    )
                if now - last_reclaim >= RECLAIM_EVERY:
                    last_reclaim = now
                    await asyncio.to_thread(ledger.reclaim_expired, self.herald.store, now)
            except SQLAlchemyError as exc:
                log.warning("%s: bookkeeping failed (%s); retrying", self.name, database_reason(exc))
                await asyncio.sleep(1.0)
            if stop.is_set() and not self.in_flight:
                return

    async def _recorder(self) -> None:
        """Group commit: record outcomes as soon as they arrive, all that piled up during a write."""
        while True:
            await self.outcome_ready.wait()
            self.outcome_ready.clear()
            await self.flush(finish=False)

    async def flush(self, finish: bool = True) -> None:
        """Record the outcomes gathered so far in one transaction, then free their send slots."""
        async with self.flushing:
            if self.pending:
                outcomes, self.pending = self.pending, []
                try:
                    await asyncio.to_thread(ledger.record, self.herald.store, outcomes, self.worker_id)
                except SQLAlchemyError as exc:
                    # The database is the truth: keep the slots (sending stops) and retry.
                    log.warning(
                        "%s: recording %d outcomes failed (%s); retrying",
                        self.name,
                        len(outcomes),
                        database_reason(exc),
                    )
                    self.pending[:0] = outcomes
                    await asyncio.sleep(1.0)
                    self.outcome_ready.set()
                    return
                for _ in outcomes:
                    self.slots.release()
                self.touched.update(o.notification_id for o in outcomes if o.state != "deferred")
        if finish:
            await self.finish()

    async def finish(self) -> None:
        """Mark notifications with nothing left open as done; forget their rendered messages."""
        if not self.touched:
            return
        ids, self.touched = self.touched, set()
        try:
            finished = await asyncio.to_thread(
                ledger.finish_notifications, self.herald.store, self.herald.clock.now(), ids
            )
        except SQLAlchemyError:
            self.touched |= ids  # checked again next time
            raise
        for notification_id in finished:
            self.prepared.pop(notification_id, None)


class Dispatcher:
    """Runs one :class:`ChannelRunner` per configured channel until ``stop`` is set."""

    def __init__(self, herald: Herald, worker_id: str, registered: bool = True) -> None:
        self.herald = herald
        self.worker_id = worker_id
        self.registered = registered
        self.runners = {name: ChannelRunner(herald, worker_id, name) for name in herald.configured_channels()}

    def start_checks(self) -> None:
        """Register this dispatcher; raises SecondDispatcherError on a SQLite database already served."""
        if self.registered:
            store = self.herald.store
            workers.register(store, self.worker_id, self.herald.clock.now(), exclusive=store.is_sqlite)

    async def run(self, stop: asyncio.Event) -> None:
        store, clock = self.herald.store, self.herald.clock
        try:
            await asyncio.to_thread(ledger.reclaim_expired, store, clock.now())
        except SQLAlchemyError as exc:
            log.warning("reclaiming expired leases failed (%s); the runners retry", database_reason(exc))
        try:
            await self._rebalance(await asyncio.to_thread(workers.live_workers, store, clock.now()))
        except SQLAlchemyError as exc:
            log.warning(
                "reading the live workers failed (%s); retrying at the heartbeat", database_reason(exc)
            )
        helpers = [
            asyncio.create_task(listen_for_work(store, self.wake)),
            asyncio.create_task(self._heartbeat(stop)),
        ]
        try:
            await asyncio.gather(*(runner.run(stop) for runner in self.runners.values()))
        finally:
            for helper in helpers:
                helper.cancel()
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            for runner in self.runners.values():
                if runner.share is not None:
                    await asyncio.to_thread(runner.share.release)
            try:
                if self.registered:
                    await asyncio.to_thread(workers.unregister, store, self.worker_id)
                await asyncio.to_thread(ledger.release, store, self.worker_id, clock.now())
                await asyncio.to_thread(ledger.finish_notifications, store, clock.now())
            except SQLAlchemyError as exc:
                # Claims left behind are taken over by the cluster when their lease ends.
                log.warning("releasing claims at stop failed (%s)", database_reason(exc))
            await self.herald.aclose_channels()

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Say this dispatcher is alive (every HEARTBEAT_EVERY) and, more often, follow the live
        workers: the throttle's share and the connection shares depend on how many there are."""
        store = self.herald.store
        last_beat = float("-inf")
        while not stop.is_set():
            now = self.herald.clock.now()
            try:
                if self.registered and now - last_beat >= workers.HEARTBEAT_EVERY:
                    await asyncio.to_thread(workers.heartbeat, store, self.worker_id, now)
                    last_beat = now
                live = await asyncio.to_thread(workers.live_workers, store, now)
            except SQLAlchemyError as exc:
                log.warning("heartbeat failed (%s)", database_reason(exc))
            else:
                await self._rebalance(live)
            await asyncio.sleep(SHARES_EVERY)

    async def _rebalance(self, live: list[str]) -> None:
        for runner in self.runners.values():
            runner.peers = max(1, len(live))
            await runner.rebalance(live)

    def wake(self, channels: list[str]) -> None:
        """Work was queued on ``channels`` (empty: any channel): idle runners claim now."""
        for name, runner in self.runners.items():
            if not channels or name in channels:
                runner.wake.set()

    def poke(self) -> None:
        """New work was queued in this process: wake idle runners now instead of at the next poll."""
        self.wake([])
