"""One connection budget per cluster: each dispatcher's share of ``smtp.max_connections``.

On PostgreSQL the budget is ``max_connections`` numbered advisory locks (``pg_try_advisory_lock(space,
n)``, the space scoped to the deployment's schema), held on a session of the dispatcher's own; a
dispatcher may keep as many SMTP connections as it holds locks. PostgreSQL never grants one lock twice,
so the cluster never opens more than ``max_connections`` however workers come and go, and a dispatcher
killed with ``kill -9`` frees its locks with its session.

Fair shares (:func:`fair_share`) are recomputed at each heartbeat from the live workers: a worker above
its share stops starting sends beyond it and gives the extra locks back as its sends finish; a worker
below it takes free locks. So a new worker gets its share within a heartbeat or two, and the share of
a dead one is spread once it drops out of the live list. A dispatcher that cannot take a lock (all
held) sends no email until it can. On SQLite one process dispatches: it holds the whole budget.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from bot.store import LOCK_SPACE, Store, discard

log = logging.getLogger("herald.shares")

BUDGET = "smtp-connections"  # the purpose of the budget's advisory locks: (LOCK_SPACE, number)
UNLOCK = text(f"SELECT pg_advisory_unlock({LOCK_SPACE}, :n)")
TRY_LOCK = text(f"SELECT pg_try_advisory_lock({LOCK_SPACE}, :n)")


def fair_share(total: int, members: list[str], me: str) -> int:
    """``me``'s share of ``total`` among ``members`` (``me`` counted even if absent).

    Shares differ by at most one and add up to ``total``; the remainder goes to the first ids in
    sorted order, so every member computes the same split from the same list.
    """
    everyone = sorted(set(members) | {me})
    rank = everyone.index(me)
    base, extra = divmod(total, len(everyone))
    return base + (1 if rank < extra else 0)


class ConnectionShare:
    """This dispatcher's locks from the cluster's budget of ``total`` connections."""

    def __init__(self, store: Store, total: int) -> None:
        self.store = store
        self.total = total
        self.held: set[int] = set()
        self._connection: Connection | None = None
        self._lock = threading.Lock()

    def rebalance(self, target: int, busy: int) -> int:
        """Hold ``target`` locks, keeping at least ``busy`` (sends still using connections); return
        how many are held. Blocking: run it in a thread."""
        if self.store.is_sqlite:
            return self.total
        with self._lock:
            try:
                connection = self._session()
                keep = max(target, busy)
                for number in sorted(self.held, reverse=True)[: max(0, len(self.held) - keep)]:
                    connection.execute(UNLOCK, {"purpose": BUDGET, "n": number})
                    self.held.discard(number)
                for number in range(self.total):
                    if len(self.held) >= target:
                        break
                    if number in self.held:
                        continue
                    got = connection.execute(TRY_LOCK, {"purpose": BUDGET, "n": number}).scalar()
                    if got:
                        self.held.add(number)
                connection.commit()
            except SQLAlchemyError as exc:
                # The session is gone and its locks with it: others may take them now.
                log.warning("connection share: lost the locking session (%s)", type(exc).__name__)
                self._drop()
            return len(self.held)

    def release(self) -> None:
        """Give every lock back (graceful stop); the session ends with them."""
        with self._lock:
            if self._connection is not None:
                try:
                    self._connection.execute(text("SELECT pg_advisory_unlock_all()"))
                    self._connection.commit()
                except SQLAlchemyError:
                    pass
            self._drop()

    def _session(self) -> Connection:
        if self._connection is None:
            self._connection = self.store.engine.connect()
        return self._connection

    def _drop(self) -> None:
        self.held.clear()
        if self._connection is not None:
            discard(self._connection)
            self._connection = None


class Slots:
    """At most ``capacity`` sends at once, like a semaphore whose size can change while slots are held
    (a smaller capacity takes effect as held slots are released)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0
        self._freed = asyncio.Event()

    def take(self) -> bool:
        """Take a slot if one is free now (no wait); False (nothing taken) otherwise."""
        if self.held < self.capacity:
            self.held += 1
            return True
        return False

    async def acquire(self) -> bool:
        """Take a slot when one is free; False (nothing taken) once the capacity is 0."""
        while self.held >= self.capacity:
            if self.capacity == 0:
                return False
            self._freed.clear()
            await self._freed.wait()
        self.held += 1
        return True

    def release(self) -> None:
        self.held -= 1
        self._freed.set()

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        self._freed.set()
