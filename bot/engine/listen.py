"""Wake-ups across processes.

PostgreSQL: ``LISTEN``/``NOTIFY`` on the work channel. Whoever queues deliveries (``herald announce``
on a laptop, a webhook on another ``serve``) sends a ``NOTIFY`` in the same transaction
(:func:`bot.engine.ledger.announce_work`); every dispatcher listening wakes the runners of the named
channels at once.

SQLite has no notifications, but ``PRAGMA data_version`` on a held connection changes whenever another
connection commits: the dispatcher reads it every ``SQLITE_WATCH_EVERY`` (a few microseconds, no lock)
and wakes its runners when it moved, so a notice queued by ``herald announce`` in another process is
claimed within ~50 ms instead of at the next poll. Commits of this process's own connections move it
too; such a wake-up costs one claim that finds what it finds.

Polling (``dispatcher.poll_interval``) stays as the safety net, and for what becomes due by the clock
alone (retries, quiet hours, scheduled starts).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from bot.engine.ledger import WORK_CHANNEL
from bot.store import Store

log = logging.getLogger("herald.listen")

RECONNECT_CAP = 8.0
SQLITE_WATCH_EVERY = 0.05


async def listen_for_work(store: Store, wake: Callable[[list[str]], None]) -> None:
    """Call ``wake(channels)`` for every work notice, until cancelled; reconnect with backoff."""
    if store.is_sqlite:
        await watch_sqlite_commits(store, wake)
        return
    import psycopg  # PostgreSQL only: a SQLite deployment never loads the driver

    delay = 0.5
    while True:
        try:
            connection = await psycopg.AsyncConnection.connect(store.libpq_url, autocommit=True)
            async with connection:
                await connection.execute(f"LISTEN {WORK_CHANNEL}")
                wake([])  # work queued while not listening is found by the next claim
                delay = 0.5
                async for notice in connection.notifies():
                    wake([name for name in notice.payload.split(",") if name])
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning(
                "listening for new work failed (%s); polling meanwhile, retrying in %.1fs", reason, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_CAP)


async def watch_sqlite_commits(store: Store, wake: Callable[[list[str]], None]) -> None:
    """Call ``wake([])`` whenever another connection has committed to the SQLite database, until
    cancelled. An in-memory database has no other connection: nothing to watch."""
    if store.engine.url.database in (None, "", ":memory:"):
        return
    while True:
        try:
            await _watch(store, wake)
        except (SQLAlchemyError, sqlite3.Error) as exc:
            log.warning("watching for new work failed (%s); polling meanwhile", type(exc).__name__)
            await asyncio.sleep(RECONNECT_CAP)


async def _watch(store: Store, wake: Callable[[list[str]], None]) -> None:
    connection = store.engine.raw_connection()
    try:
        cursor = connection.cursor()
        seen = cursor.execute("PRAGMA data_version").fetchone()
        while True:
            await asyncio.sleep(SQLITE_WATCH_EVERY)
            version = cursor.execute("PRAGMA data_version").fetchone()
            if version != seen:
                seen = version
                wake([])
    finally:
        connection.close()
