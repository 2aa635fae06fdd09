"""The dispatcher: one :class:`~bot.engine.runner.ChannelRunner` per registered channel, run until stopped.

It registers the process as a worker, beats its heart, follows the live workers (the throttle's share
and the connection shares depend on how many there are), wakes idle runners when work is announced
(:mod:`bot.engine.listen`) and, on stop, releases what it claimed. The database is the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.exc import SQLAlchemyError

from bot.app import Herald
from bot.engine import ledger, notice_state, workers
from bot.engine.health import OutageNotifier
from bot.engine.listen import listen_for_work
from bot.engine.runner import ChannelRunner
from bot.store import database_reason

log = logging.getLogger("herald.dispatcher")

SHARES_EVERY = 2.0  # how often a dispatcher follows workers coming and going


class Dispatcher:
    """Runs one :class:`ChannelRunner` per configured channel until ``stop`` is set."""

    def __init__(
        self,
        herald: Herald,
        worker_id: str,
        registered: bool = True,
        notify: OutageNotifier | None = None,
        exclusive: bool = True,
    ) -> None:
        """``notify`` tells operators when a channel goes down or comes back (:mod:`bot.engine.health`);
        without ``exclusive`` (a command's ``--wait``) it runs beside a SQLite database's dispatcher."""
        self.herald = herald
        self.worker_id = worker_id
        self.registered = registered
        self.exclusive = exclusive
        self.runners = {
            name: ChannelRunner(herald, worker_id, name, notify) for name in herald.configured_channels()
        }

    def start_checks(self) -> None:
        """Register this dispatcher; raises SecondDispatcherError on a SQLite database already served."""
        if self.registered:
            store = self.herald.store
            exclusive = self.exclusive and store.is_sqlite
            workers.register(store, self.worker_id, self.herald.clock.now(), exclusive=exclusive)

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
                await asyncio.to_thread(notice_state.finish_notifications, store, clock.now())
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
                    await self._beat(now)
                    last_beat = now
                # Any live dispatcher takes over the claims of one whose heartbeat stopped.
                await asyncio.to_thread(workers.reap, store, now, self.worker_id)
                live = await asyncio.to_thread(workers.live_workers, store, now)
            except SQLAlchemyError as exc:
                log.warning("heartbeat failed (%s)", database_reason(exc))
            else:
                await self._rebalance(live)
            await asyncio.sleep(SHARES_EVERY)

    async def _beat(self, now: float) -> None:
        """Write the heartbeat; no send starts once it is too old for the others to trust."""
        store = self.herald.store
        kept = await asyncio.to_thread(workers.heartbeat, store, self.worker_id, now)
        for runner in self.runners.values():
            if not kept:  # reaped while stalled: what it had claimed is the others' now
                log.warning("%s: this dispatcher was taken for dead; dropping its claims", self.worker_id)
                runner.epoch += 1
            runner.claims_until = workers.claims_valid_until(now)

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
