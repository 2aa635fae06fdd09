"""Outcome writes from the event loop itself, without a hand-off to a worker thread.

A send's slot is freed only once its outcome is committed (:class:`bot.engine.stages.GroupCommit`),
so the commit is in every slot's cycle. Handing each group to a worker thread costs more than the
write itself: the thread must be woken and the interpreter lock passed back and forth (up to a
millisecond of the loop's time per hand-off on a busy 2-core machine). So groups are written here:

- **SQLite** (:class:`SqliteLoopWriter`): on the loop's thread. In WAL mode with
  ``synchronous=NORMAL`` a commit does not wait for the disk (30-100 us). It must never stall the loop
  behind another writer (a CLI creating a large notification, a web request): its connection has
  ``busy_timeout = 0``, so a write that finds the database locked returns ``False`` and the caller
  hands that group to a thread, which waits as usual. It never checkpoints the WAL
  (``wal_autocheckpoint = 0``), which would write the database file on the loop; the thread-side
  connections that claim and record the rest checkpoint as before.
- **PostgreSQL** (:class:`PgLoopWriter`): over psycopg's async connection in autocommit, the same one
  statement :func:`bot.engine.ledger.record` sends, awaited on the loop.

Either returns ``False`` (nothing written) when the group should go the thread way instead: the
database is busy, the group suppresses an address (a rare write with a transaction of its own), or
the async connection failed (it is reopened for the next group; the thread path then reports the
database's state through SQLAlchemy's errors, which :class:`~bot.engine.stages.GroupCommit` retries).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from bot.engine import ledger
from bot.engine.ledger import Outcome
from bot.store import Store, discard

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("herald.dispatcher")


class LoopWriter(Protocol):
    async def record(self, outcomes: Sequence[Outcome]) -> bool: ...

    async def close(self) -> None: ...


def loop_writer(store: Store, worker: str) -> LoopWriter:
    """The writer for ``store``'s database."""
    if store.is_sqlite:
        return SqliteLoopWriter(store, worker)
    return PgLoopWriter(store, worker)


class SqliteLoopWriter:
    """Writes outcome groups on the loop's thread over one held connection."""

    def __init__(self, store: Store, worker: str) -> None:
        self.store = store
        self.worker = worker
        self.connection: Connection | None = None

    async def record(self, outcomes: Sequence[Outcome]) -> bool:
        """Write ``outcomes`` in one transaction; False (nothing written) when the database is busy."""
        connection = self._connection()
        try:
            with connection.begin():
                ledger.write_outcomes(connection, True, outcomes, self.worker)
        except OperationalError as exc:
            if is_busy(exc):
                return False
            await self.close()  # a fresh connection next time; the caller retries the group
            raise
        return True

    def _connection(self) -> Connection:
        if self.connection is None:
            connection = self.store.engine.connect()
            connection.exec_driver_sql("PRAGMA busy_timeout = 0")
            connection.exec_driver_sql("PRAGMA wal_autocheckpoint = 0")
            connection.commit()
            self.connection = connection
        return self.connection

    async def close(self) -> None:
        """Drop the connection (never back to the pool: its settings are this writer's own)."""
        if self.connection is not None:
            discard(self.connection)
            self.connection = None


def is_busy(exc: OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the lock (SQLITE_BUSY/LOCKED)."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc.orig)


class PgLoopWriter:
    """Writes outcome groups with psycopg's async connection, one statement each, in autocommit."""

    def __init__(self, store: Store, worker: str) -> None:
        self.store = store
        self.worker = worker
        self.connection: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def record(self, outcomes: Sequence[Outcome]) -> bool:
        if any(o.suppress for o in outcomes):
            return False  # suppressions are written with the outcomes in one transaction
        import psycopg  # PostgreSQL only: a SQLite deployment never loads the driver

        statement, parameters = ledger.pg_record(outcomes, self.worker)
        try:
            if self.connection is None or self.connection.closed:
                self.connection = await psycopg.AsyncConnection.connect(self.store.libpq_url, autocommit=True)
            await self.connection.execute(statement.encode(), parameters)
        except psycopg.Error as exc:
            # The statement either ran or not; both ways the thread path's write is right (it sets the
            # same values, and only where this worker still holds the lease).
            log.info("recording outcomes on the loop failed (%s); using a thread", type(exc).__name__)
            await self.close()
            return False
        return True

    async def close(self) -> None:
        if self.connection is not None:
            import psycopg

            connection, self.connection = self.connection, None
            with contextlib.suppress(psycopg.Error):
                await connection.close()
