"""Time, injected: the :class:`Clock` contract, :class:`SystemClock` and :class:`ManualClock`.

Whatever Herald decides by time reads ``herald.clock``: deadlines and SLAs, quiet hours, leases,
throttles and their pauses, daily caps, escalation and reminders, retention, directory sync
schedules, Slack progress updates and request timestamps. Tests pass a :class:`ManualClock` and
drive time instead of sleeping.

Real time on purpose, off the clock: how often background loops run (the dispatcher's poll, flush
and heartbeat loops and its pauses after a database error, the LISTEN reconnect), waiting for the web
server to start, for ``--wait`` progress and in ``herald demo``, idle database connections and
request durations (monotonic), the stand-ins in ``bot/standins/``, a directory import given no
``now``, and ``channels/``, which never imports ``bot/``: its email channel takes a clock callable,
and the Date header defaults to the wall clock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the UNIX epoch."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when told; ``sleep`` advances it and yields to the loop."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self._now += max(0.0, seconds)
        await asyncio.sleep(0)
