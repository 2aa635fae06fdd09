"""The scheduled directory sync: what ``herald serve``'s scheduler runs.

:func:`scheduled_sync` syncs only when the last *successful* sync, read from ``audit_log``, is at
least ``directory.sync_every`` old, so a restart, or several ``serve`` processes on one database, do
not sync more often than asked. The database is the truth; the scheduler only ticks: run it more
often than ``sync_every`` (every :func:`check_every` seconds) so a sync is never a whole interval late.

Several processes ticking at once: a lease row in ``key_value`` (:data:`LEASE_KEY`, "<until> <owner>",
claimed by a compare-and-set update) lets one of them sync; the others skip. A process that dies
mid-sync leaves a lease that expires after :data:`LEASE_FOR` seconds.

A failed sync (:class:`~bot.sync.errors.SyncError`) is logged and stored by the runner and not
raised: the next tick tries again. Anything else propagates to the scheduler's guard.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.app import Herald
from bot.store import Store
from bot.sync.errors import SyncError
from bot.sync.runner import last_successful_sync, sync
from bot.tables import KeyValue, table_of

log = logging.getLogger("herald.sync")

KEY_VALUE = table_of(KeyValue)
LEASE_KEY = "directory.sync.lease"
LEASE_FOR = 900.0
CHECK_EVERY = 60.0
ACTOR = "scheduler"


def check_every(sync_every: float) -> float:
    """How often the scheduler should call :func:`scheduled_sync` for a given ``sync_every``."""
    return max(1.0, min(CHECK_EVERY, sync_every))


async def scheduled_sync(herald: Herald) -> None:
    """Sync from the configured source when one is due; see the module docstring."""
    directory = herald.settings.directory
    if directory.source == "file" and not directory.path:
        return  # nothing to sync from: people are imported by hand
    if not await asyncio.to_thread(is_due, herald.store, herald.clock.now(), directory.sync_every):
        return
    owner = uuid.uuid4().hex
    if not await asyncio.to_thread(claim_lease, herald.store, owner, herald.clock.now()):
        log.debug("directory sync skipped: another process holds the lease")
        return
    try:
        # Another process may have finished a sync between the first check and the claim.
        if await asyncio.to_thread(is_due, herald.store, herald.clock.now(), directory.sync_every):
            await sync(herald, actor=ACTOR)
    except SyncError:
        pass  # logged and stored by the runner; the next tick tries again
    finally:
        await asyncio.to_thread(release_lease, herald.store, owner)


def is_due(store: Store, now: float, sync_every: float) -> bool:
    """True when no sync has succeeded within the last ``sync_every`` seconds."""
    last = last_successful_sync(store)
    return last is None or now - last >= sync_every


def claim_lease(store: Store, owner: str, now: float, lease_for: float = LEASE_FOR) -> bool:
    """Take the sync lease when it is free or expired; False when another owner holds it."""
    value = f"{now + lease_for:.3f} {owner}"
    with store.begin() as connection:
        current = connection.execute(
            select(KEY_VALUE.c.value).where(KEY_VALUE.c.key == LEASE_KEY)
        ).scalar_one_or_none()
        if current is None:
            insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
            create = (
                insert(KEY_VALUE)
                .values(key=LEASE_KEY, value=value)
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(KEY_VALUE.c.key)
            )
            # RETURNING, not rowcount: psycopg reports no count for a single-row INSERT here.
            return connection.execute(create).scalar_one_or_none() is not None
        if _lease_until(current) > now:
            return False
        # Compare-and-set: of two processes that read the same expired lease, one updates it.
        swap = (
            update(KEY_VALUE)
            .where(KEY_VALUE.c.key == LEASE_KEY, KEY_VALUE.c.value == current)
            .values(value=value)
        )
        return connection.execute(swap).rowcount == 1


def release_lease(store: Store, owner: str) -> None:
    """Give the lease back (only when ``owner`` still holds it)."""
    with store.begin() as connection:
        connection.execute(
            delete(KEY_VALUE).where(KEY_VALUE.c.key == LEASE_KEY, KEY_VALUE.c.value.endswith(f" {owner}"))
        )


def _lease_until(value: str) -> float:
    try:
        return float(value.split(" ", 1)[0])
    except ValueError:
        return 0.0
