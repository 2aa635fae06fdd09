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
  (``wal_autocheckpoint = 0``), which would write the database file on the loop: the channel runner
  checkpoints in a thread every half second (:func:`checkpoint`), and the thread-side connections
  checkpoint as before.
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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from bot.engine import ledger
from bot.engine.ledger import Outcome
from bot.store import Store, discard

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("herald.dispatcher")

WAL_RESTART_PAGES = 1000  # SQLite's own wal_autocheckpoint default


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
            if any(o.suppress for o in outcomes):  # rare: with the suppression rows, through SQLAlchemy
                with connection.begin():
                    ledger.write_outcomes(connection, True, outcomes, self.worker)
                return True
            statements = ledger.sqlite_outcomes(outcomes, self.worker)
            return driver_transaction(connection, lambda raw: [raw.executemany(*s) for s in statements])
        except OperationalError as exc:
            if is_busy(exc):
                return False
            await self.close()  # a fresh connection next time; the caller retries the group
            raise

    def _connection(self) -> Connection:
        if self.connection is None:
            self.connection = loop_connection(self.store)
        return self.connection

    async def close(self) -> None:
        """Drop the connection (never back to the pool: its settings are this writer's own)."""
        if self.connection is not None:
            discard(self.connection)
            self.connection = None


def loop_connection(store: Store) -> Connection:
    """SQLite: a connection of its own for work on the loop's thread, which never waits for another
    writer (``busy_timeout = 0``) and never checkpoints (``wal_autocheckpoint = 0``)."""
    connection = store.engine.connect()
    connection.exec_driver_sql("PRAGMA busy_timeout = 0")
    connection.exec_driver_sql("PRAGMA wal_autocheckpoint = 0")
    connection.commit()
    return connection


def driver_transaction(connection: Connection, work: Callable[[sqlite3.Connection], object]) -> bool:
    """SQLite: ``work`` on the driver's own connection under ``connection``, then commit: the hot
    statements skip SQLAlchemy's per-statement machinery (half their CPU on the loop). False (rolled
    back) when the database is busy; any other error is raised as SQLAlchemy's."""
    raw = cast(sqlite3.Connection, connection.connection.driver_connection)
    try:
        work(raw)
        raw.commit()
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            raw.rollback()
        if _busy_code(exc):
            return False
        raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
    return True


def checkpoint(store: Store) -> None:
    """SQLite: copy the WAL into the database, and once it holds ``WAL_RESTART_PAGES`` pages, make the
    next write start it again from the beginning (``RESTART``; meanwhile the loop's writes find the
    database busy and go to a thread). A passive checkpoint alone races the loop's next commit, and the
    WAL would grow by every group written. Blocking: run it in a thread."""
    with store.engine.connect() as connection:
        _, pages, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        if pages >= WAL_RESTART_PAGES:
            # Waits for readers a moment at most (a long read elsewhere: the next round tries again).
            timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
            connection.exec_driver_sql("PRAGMA busy_timeout = 200")
            try:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)").all()
            finally:
                connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(timeout)}")


def is_busy(exc: OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the lock (SQLITE_BUSY/LOCKED)."""
    return _busy_code(exc.orig)


def _busy_code(orig: object) -> bool:
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(orig)


class PgLoopConnection:
    """One psycopg async connection in autocommit, opened on first use and again after ``close``.
    PostgreSQL only: a SQLite deployment never loads the driver. Errors are the caller's."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.connection: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def execute(
        self, statement: str, parameters: tuple[Any, ...]
    ) -> psycopg.AsyncCursor[tuple[object, ...]]:
        import psycopg

        if self.connection is None or self.connection.closed:
            self.connection = await psycopg.AsyncConnection.connect(self.store.libpq_url, autocommit=True)
        return await self.connection.execute(statement.encode(), parameters)

    async def close(self) -> None:
        if self.connection is not None:
            import psycopg

            connection, self.connection = self.connection, None
            with contextlib.suppress(psycopg.Error):
                await connection.close()


class PgLoopWriter:
    """Writes outcome groups with psycopg's async connection, one statement each, in autocommit."""

    def __init__(self, store: Store, worker: str) -> None:
        self.worker = worker
        self.pg = PgLoopConnection(store)

    async def record(self, outcomes: Sequence[Outcome]) -> bool:
        if any(o.suppress for o in outcomes):
            return False  # suppressions are written with the outcomes in one transaction
        import psycopg  # PostgreSQL only: a SQLite deployment never loads the driver

        statement, parameters = ledger.pg_record(outcomes, self.worker)
        try:
            await self.pg.execute(statement, parameters)
        except psycopg.Error as exc:
            # The statement either ran or not; both ways the thread path's write is right (it sets the
            # same values, and only where this worker still holds the lease).
            log.info("recording outcomes on the loop failed (%s); using a thread", type(exc).__name__)
            await self.close()
            return False
        return True

    async def close(self) -> None:
        await self.pg.close()
