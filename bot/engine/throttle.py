"""Per-channel pacing that holds for the whole cluster: send slots reserved from the database.

The throttle is a generic cell rate algorithm kept in one row per channel (``throttle_slot``):
``next_at`` is the earliest time the next message may start. A dispatcher reserves ``k`` slots at once
with one atomic ``UPDATE … RETURNING`` (``next_at = max(next_at, now - (burst-1)/rate) + k/rate``), then
starts each send at its slot time. Slots are ``1/rate`` apart across every worker, so N workers
together never exceed ``rate_per_second``; an SMS costs one slot per segment. ``burst`` lets that many
go at once after an idle spell (0 or 1: evenly spaced).

Back-pressure (SMTP 421/451, Twilio 429, ``Retry-After``) pushes ``next_at`` forward for everyone;
unthrottled channels keep the row only for that, and each worker reads it a few times a second.
Slots reserved but not used in time are dropped rather than sent late in a bunch. A worker that dies
holding slots only leaves the channel idle for their span.
"""

from __future__ import annotations

import asyncio
from collections import deque

from sqlalchemy import ColumnElement, case, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.clock import Clock
from bot.store import Store
from bot.tables import ThrottleSlot, table_of

SLOT = table_of(ThrottleSlot)
RESERVE_SECONDS = 0.25  # how much of the rate one reservation takes


def _later(column: ColumnElement[float], value: float) -> ColumnElement[float]:
    """The later of a column and a value, in SQL both databases speak."""
    return case((column > value, column), else_=literal(value))


def reserve(store: Store, channel: str, count: int, rate: float, burst: int, now: float) -> float:
    """Reserve ``count`` consecutive slots; return the first slot's time."""
    span = count / rate
    floor = now - max(0, burst - 1) / rate
    dialect_insert = sqlite.insert if store.is_sqlite else postgresql.insert
    with store.begin() as connection:
        connection.execute(
            dialect_insert(SLOT)
            .values(channel=channel, next_at=floor)
            .on_conflict_do_nothing(index_elements=["channel"])
        )
        new_next = connection.execute(
            update(SLOT)
            .where(SLOT.c.channel == channel)
            .values(next_at=_later(SLOT.c.next_at, floor) + span)
            .returning(SLOT.c.next_at)
        ).scalar_one()
    return float(new_next) - span


def push_back(store: Store, channel: str, until: float) -> None:
    """No slot of ``channel`` before ``until`` (the peer asked every sender to wait)."""
    dialect_insert = sqlite.insert if store.is_sqlite else postgresql.insert
    with store.begin() as connection:
        connection.execute(
            dialect_insert(SLOT)
            .values(channel=channel, next_at=until)
            .on_conflict_do_update(
                index_elements=["channel"], set_={"next_at": _later(SLOT.c.next_at, until)}
            )
        )


def next_free(store: Store, channel: str) -> float | None:
    with store.begin() as connection:
        value = connection.execute(select(SLOT.c.next_at).where(SLOT.c.channel == channel)).scalar()
    return float(value) if value is not None else None


class Pacer:
    """Hands out send start times for one channel under the cluster-wide rate."""

    def __init__(self, store: Store, channel: str, rate: float, burst: int, clock: Clock) -> None:
        self.store = store
        self.channel = channel
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._slots: deque[float] = deque()
        self._paused_until = 0.0
        self.waited = 0.0  # seconds spent waiting for slots (a metric)

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def clear(self) -> bool:
        """Unthrottled and not paused: :meth:`take` would return at once (and wait nothing)."""
        return self.rate <= 0 and self._paused_until <= self.clock.now()

    async def take(self, cost: int = 1) -> None:
        """Wait until this worker may start a send that costs ``cost`` slots."""
        pause = self._paused_until - self.clock.now()
        if pause > 0:
            self.waited += pause
            await self.clock.sleep(pause)
        if self.unlimited:
            return
        cost = max(1, cost)
        now = self.clock.now()
        late = now - 1.0 / self.rate
        while self._slots and self._slots[0] < late:
            self._slots.popleft()  # stale: sending now would bunch up with fresh slots
        if len(self._slots) < cost:
            count = max(cost - len(self._slots), int(self.rate * RESERVE_SECONDS))
            start = await asyncio.to_thread(
                reserve, self.store, self.channel, count, self.rate, self.burst, now
            )
            if self._slots and start > self._slots[-1] + 1.0 / self.rate:
                self._slots.clear()  # someone else took the slots between ours: keep order simple
            self._slots.extend(start + i / self.rate for i in range(count))
        for _ in range(cost - 1):
            self._slots.popleft()
        slot = self._slots.popleft()
        wait = slot - self.clock.now()
        if wait > 0:
            self.waited += wait
            await self.clock.sleep(wait)

    async def pause(self, seconds: float) -> None:
        """Hold every sender of this channel, cluster-wide, for ``seconds``."""
        self._slots.clear()
        until = self.clock.now() + seconds
        self._paused_until = max(self._paused_until, until)
        await asyncio.to_thread(push_back, self.store, self.channel, until)

    async def refresh(self) -> None:
        """Unthrottled: learn of a pause another worker stored (throttled pacers meet it when they
        reserve slots). The dispatcher calls this a few times a second, not per send."""
        if not self.unlimited:
            return
        until = await asyncio.to_thread(next_free, self.store, self.channel)
        if until is not None and until > self.clock.now():
            self._paused_until = max(self._paused_until, until)
