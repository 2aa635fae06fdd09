"""Wake-ups across processes: PostgreSQL ``LISTEN``/``NOTIFY`` on the work channel.

Whoever queues deliveries (``herald announce`` on a laptop, a webhook on another ``serve``) sends a
``NOTIFY`` in the same transaction (:func:`bot.engine.ledger.announce_work`); every dispatcher listening
wakes the runners of the named channels at once. Polling (``dispatcher.poll_interval``) stays as the
safety net, and for what becomes due by the clock alone (retries, quiet hours, scheduled starts).
SQLite has one dispatcher, woken in-process; nothing to listen to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.engine.ledger import WORK_CHANNEL
from bot.store import Store

log = logging.getLogger("herald.listen")

RECONNECT_CAP = 8.0


async def listen_for_work(store: Store, wake: Callable[[list[str]], None]) -> None:
    """Call ``wake(channels)`` for every work notice, until cancelled; reconnect with backoff."""
    if store.is_sqlite:
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
