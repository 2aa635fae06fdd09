"""Claims from the event loop itself, without a hand-off to a worker thread.

A channel runner claims a batch several times a second while it sends (the next batch is claimed while
the last sends of this one go out, :class:`bot.engine.runner.ChannelRunner`). In a thread, that claim
competes with the busy loop for the interpreter lock: it takes tens of milliseconds of wall time for a
few milliseconds of work, and the sends run dry waiting for it. So, as outcome groups are written
(:mod:`bot.engine.loop_writes`), a claim runs:

- **SQLite** (:class:`SqliteLoopClaimer`): on the loop's thread, over one held connection with
  ``busy_timeout = 0`` and ``wal_autocheckpoint = 0`` (:func:`~bot.engine.loop_writes.loop_connection`):
  a claim that finds the database locked (another process creating a notification) rolls back at once
  and that claim goes to a thread, which waits for the lock as before;
- **PostgreSQL** (:class:`PgLoopClaimer`): the same one statement :func:`bot.engine.ledger.claim` sends,
  over psycopg's async connection in autocommit. A claim under a daily cap (the counter is locked in
  a transaction of its own) and any psycopg error go the thread way.

Either returns ``None`` (nothing claimed) when the claim should go the thread way instead.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Protocol

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from bot.engine import ledger
from bot.engine.ledger import Claimed
from bot.engine.loop_writes import PgLoopConnection, driver_transaction, is_busy, loop_connection
from bot.store import Store, discard

log = logging.getLogger("herald.dispatcher")


class LoopClaimer(Protocol):
    async def claim(
        self, channel: str, worker: str, now: float, lease: float, limit: int, cap: int | None
    ) -> list[Claimed] | None: ...

    async def close(self) -> None: ...


def loop_claimer(store: Store) -> LoopClaimer:
    """The claimer for ``store``'s database."""
    if store.is_sqlite:
        return SqliteLoopClaimer(store)
    return PgLoopClaimer(store)


class SqliteLoopClaimer:
    """Claims on the loop's thread over one held connection; None when the database is busy."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.connection: Connection | None = None

    async def claim(
        self, channel: str, worker: str, now: float, lease: float, limit: int, cap: int | None
    ) -> list[Claimed] | None:
        if self.connection is None:
            self.connection = loop_connection(self.store)
        rows: list[tuple[object, ...]] = []
        connection = self.connection
        try:
            if cap is not None:  # the counter is locked and read first: through SQLAlchemy
                with connection.begin():
                    return ledger.claim_on(self.store, connection, channel, worker, now, lease, limit, cap)

            def claim(raw: sqlite3.Connection) -> None:
                rows.extend(ledger.sqlite_claim(raw.execute, channel, worker, now, lease, limit))

            if not driver_transaction(connection, claim):
                return None  # rolled back: nothing claimed
        except OperationalError as exc:
            if is_busy(exc):
                return None  # rolled back: nothing claimed
            await self.close()  # a fresh connection next time
            raise
        return ledger.claimed_batch(channel, rows, now)

    async def close(self) -> None:
        if self.connection is not None:
            discard(self.connection)
            self.connection = None


class PgLoopClaimer:
    """Claims with psycopg's async connection, one statement each, in autocommit."""

    def __init__(self, store: Store) -> None:
        self.pg = PgLoopConnection(store)

    async def claim(
        self, channel: str, worker: str, now: float, lease: float, limit: int, cap: int | None
    ) -> list[Claimed] | None:
        if cap is not None or limit <= 0:
            return None  # the counter is locked in a transaction: the thread way
        import psycopg  # PostgreSQL only: a SQLite deployment never loads the driver

        statement, parameters = ledger.pg_claim(channel, worker, now, lease, limit)
        try:
            cursor = await self.pg.execute(statement, parameters)
            rows = await cursor.fetchall()
        except psycopg.Error as exc:
            # Autocommit: the statement either ran or not. If it ran, its rows are leased to this worker
            # and come back when the lease runs out; the thread's claim takes others meanwhile.
            log.info("claiming on the loop failed (%s); using a thread", type(exc).__name__)
            await self.close()
            return None
        return ledger.claimed_batch(channel, rows, now)

    async def close(self) -> None:
        await self.pg.close()
