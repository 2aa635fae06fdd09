"""Outcome writes and claims from the event loop (bot.engine.loop_writes, bot.engine.loop_claims),
through the record stage GroupCommit and the channel runner's claim.

A group is written on the loop itself (SQLite on its thread, PostgreSQL over psycopg's async
connection); a slot is freed only once its outcome is committed. When another writer holds SQLite's
lock, the loop must keep running and the group must still be written (the batch still claimed), by a
thread that waits.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.directory.audience import parse_audience
from bot.directory.audience_sql import audience_condition
from bot.directory.records import PersonRecord
from bot.directory.store import import_people
from bot.engine import ledger
from bot.engine.create import DELIVERY, NewNotification, ensure_notification, new_notification_id
from bot.engine.loop_claims import PgLoopClaimer, SqliteLoopClaimer
from bot.engine.loop_writes import WAL_RESTART_PAGES, PgLoopWriter, SqliteLoopWriter, checkpoint
from bot.engine.outcomes import RetryPolicy, decide
from bot.engine.runner import ChannelRunner
from bot.engine.stages import GroupCommit
from bot.store import Store, open_store
from channels.base import PermanentError, Receipt

NOW = 1_800_000_000.0
POLICY = RetryPolicy(retry_for=3600, base=1, cap=60, max_unknown=3)


@pytest.fixture
def herald(store: Store, db_url: str) -> Iterator[Herald]:
    settings = load_settings(None, database={"url": db_url}, quiet_hours={"kinds": []})
    yield Herald.build(settings, clock=ManualClock(NOW), store=store)


def queue(store: Store, people: int) -> list[ledger.Claimed]:
    """A notification to ``people`` by email, every delivery claimed by worker ``w1``."""
    queue_only(store, people)
    return ledger.claim(store, "email", "w1", NOW, 60, people)


def queue_only(store: Store, people: int) -> None:
    """A notification to ``people`` by email, its deliveries queued."""
    import_people(
        store, [PersonRecord(id=f"p{i}", name=f"P{i}", email=f"p{i}@example.com") for i in range(people)]
    )
    notice = NewNotification(
        id=new_notification_id(), kind="announcement", severity="info", title="t", body="b",
        audience="everyone", channels=("email",), created_by="test", created_at=NOW, start_at=NOW,
        deadline=NOW + 600, idempotency_key=None,
    )  # fmt: skip
    ensure_notification(store, notice, audience_condition(parse_audience("everyone")))


def states(store: Store) -> dict[str, str]:
    with store.begin() as connection:
        rows = connection.execute(select(DELIVERY.c.address, DELIVERY.c.state, DELIVERY.c.sent_by)).all()
    return {address: f"{state}/{sent_by}" for address, state, sent_by in rows}


async def test_groups_are_written_from_the_loop_and_free_their_slots(herald: Herald) -> None:
    claimed = queue(herald.store, 3)
    freed: list[int] = []
    commit = GroupCommit(herald, "email", "w1", lambda: freed.append(1))
    assert isinstance(commit.loop_writer, SqliteLoopWriter if herald.store.is_sqlite else PgLoopWriter)
    rng = random.Random(1)
    for item in claimed[:2]:
        commit.add(decide(item, Receipt(provider_id="250 ok"), NOW + 1, False, POLICY, rng))
    await commit.write()
    assert len(freed) == 2
    # A hard failure suppresses the address: that group is written with its suppression row.
    refused = PermanentError("rejected_recipient", "550 5.1.1 no such user", suppress=True)
    commit.add(decide(claimed[2], refused, NOW + 1, False, POLICY, rng))
    await commit.write()
    await commit.close()
    assert len(freed) == 3
    assert states(herald.store) == {
        "p0@example.com": "sent/w1",
        "p1@example.com": "sent/w1",
        "p2@example.com": "failed/None",
    }
    with herald.store.begin() as connection:
        suppressed = connection.execute(select(ledger.SUPPRESSION.c.address)).scalars().all()
    assert suppressed == ["p2@example.com"]


@pytest.fixture
def sqlite_herald(tmp_path: Path) -> Iterator[Herald]:
    url = f"sqlite:///{tmp_path / 'herald.db'}"
    store = open_store(url)
    settings = load_settings(None, database={"url": url}, quiet_hours={"kinds": []})
    yield Herald.build(settings, clock=ManualClock(NOW), store=store)
    store.dispose()


class WriteLock:
    """Another connection (another process, as a CLI creating a notification would be) holding SQLite's
    write lock until the test sets ``loop_ran`` (having seen the loop turn while Herald waits for the
    lock), or for 5 s at most: half SQLite's busy timeout (10 s), so a write or claim that waited for the
    lock on the loop's thread would keep the loop from turning past it. ``seen`` says whether the test
    set ``loop_ran`` in time."""

    def __init__(self, store: Store) -> None:
        self.locker = sqlite3.connect(
            store.url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
        )
        self.locker.execute("BEGIN IMMEDIATE")
        self.loop_ran = threading.Event()
        self.seen: list[bool] = []
        self.holder = threading.Thread(target=self._hold)
        self.holder.start()

    def _hold(self) -> None:
        self.seen.append(self.loop_ran.wait(timeout=5))
        self.locker.execute("COMMIT")

    def release(self) -> None:
        self.holder.join()
        self.locker.close()


async def test_a_locked_sqlite_database_never_stalls_the_loop(sqlite_herald: Herald) -> None:
    herald = sqlite_herald
    claimed = queue(herald.store, 2)
    # Another connection (another process, as a CLI creating a notification would be) holds the write
    # lock until the loop has been seen running while the group waits for it.
    lock = WriteLock(herald.store)
    freed: list[int] = []
    commit = GroupCommit(herald, "email", "w1", lambda: freed.append(1))
    rng = random.Random(1)
    for item in claimed:
        commit.add(decide(item, Receipt(provider_id="250 ok"), NOW + 1, False, POLICY, rng))
    write = asyncio.create_task(commit.write())
    ticks = 0
    while not write.done() and ticks < 3:  # the loop turns while the write waits for the lock
        await asyncio.sleep(0.01)
        ticks += 1
    assert not write.done() and not freed  # nothing written, no slot freed while locked
    lock.loop_ran.set()
    await asyncio.wait_for(write, timeout=30)
    lock.release()
    await commit.close()
    assert lock.seen == [True] and len(freed) == 2
    assert set(states(herald.store).values()) == {"sent/w1"}


async def test_claims_come_from_the_loop_and_lease_to_the_worker(herald: Herald) -> None:
    queue_only(herald.store, 3)
    runner = ChannelRunner(herald, "w1", "email")
    assert isinstance(runner.claimer, SqliteLoopClaimer if herald.store.is_sqlite else PgLoopClaimer)
    _, batch = await runner._claim(most=2)
    _, rest = await runner._claim(most=5)
    await runner.claimer.close()
    assert [item.address for item in batch + rest] == ["p0@example.com", "p1@example.com", "p2@example.com"]
    assert set(states(herald.store).values()) == {"sending/None"}
    with herald.store.begin() as connection:
        owners = connection.execute(select(DELIVERY.c.lease_owner, DELIVERY.c.attempts)).all()
    assert set(owners) == {("w1", 1)}


async def test_a_locked_sqlite_database_never_stalls_a_claim(sqlite_herald: Herald) -> None:
    herald = sqlite_herald
    queue_only(herald.store, 2)
    runner = ChannelRunner(herald, "w1", "email")
    lock = WriteLock(herald.store)
    claim = asyncio.create_task(runner._claim())
    ticks = 0
    while not claim.done() and ticks < 3:  # the loop turns while the claim waits for the lock
        await asyncio.sleep(0.01)
        ticks += 1
    assert not claim.done()
    lock.loop_ran.set()
    _, batch = await asyncio.wait_for(claim, timeout=30)
    lock.release()
    # Once the lock is free, the loop's own connection claims again.
    assert await runner.claimer.claim("email", "w1", NOW, 60, 5, None) == []
    await runner.claimer.close()
    assert lock.seen == [True] and len(batch) == 2
    assert set(states(herald.store).values()) == {"sending/None"}


async def test_the_wal_the_loop_writes_starts_again_after_a_checkpoint(sqlite_herald: Herald) -> None:
    herald = sqlite_herald
    claimed = queue(herald.store, 600)
    wal = Path(herald.store.url.removeprefix("sqlite:///") + "-wal")
    writer = SqliteLoopWriter(herald.store, "w1")
    rng = random.Random(1)

    async def send(items: list[ledger.Claimed]) -> None:
        for item in items:  # one commit each
            outcome = decide(item, Receipt(provider_id="250 ok"), NOW + 1, False, POLICY, rng)
            assert await writer.record([outcome])

    await send(claimed[:-10])
    grown = wal.stat().st_size
    assert grown >= WAL_RESTART_PAGES * 4096  # the loop's connection never checkpoints
    await asyncio.to_thread(checkpoint, herald.store)
    await send(claimed[-10:])
    await writer.close()
    assert wal.stat().st_size == grown  # the writes after the checkpoint reused the WAL from its start
    assert set(states(herald.store).values()) == {"sent/w1"}
