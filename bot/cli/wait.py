"""Dispatching in a command's own process until a notification is delivered (``announce --wait``,
``alert --wait``, the demo).

Kept apart from :mod:`bot.server` so that these commands never import what only ``herald serve``
needs (uvicorn, starlette, APScheduler, Bolt, the metrics registry): see
``tests/test_import_discipline.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bot import service
from bot.alerts.outages import outage_notifier
from bot.app import Herald
from bot.engine import notice_state, workers
from bot.engine.dispatcher import Dispatcher
from bot.engine.health import held_by
from bot.engine.ladder_tick import start_due_rungs

POLL = 0.5  # seconds between progress reads while deliveries are going out
POLL_MIN = 0.05  # the shortest, as the last open deliveries are due
SETTLE = 2.0  # nothing moved this long with none open: back to POLL (a later rung may be minutes away)


@dataclass
class Pace:
    """When to read the progress next: every ``POLL`` seconds, sooner when, at the rate the open
    deliveries have been closing, the rest (or the notification's own finishing, none left) is due
    sooner, so the command ends within about ``POLL_MIN`` of its last delivery, not up to ``POLL``."""

    left: int | None = None
    moved_at: float = 0.0
    rate: float = 0.0  # deliveries closed per second between the last two reads that saw a change

    def next(self, left: int, now: float) -> float:
        if self.left is not None and left < self.left:
            self.rate = (self.left - left) / max(now - self.moved_at, POLL_MIN)
        if self.left is None or left != self.left:
            self.left, self.moved_at = left, now
        if self.rate <= 0 or (left == 0 and now - self.moved_at > SETTLE):
            return POLL
        return min(POLL, max(POLL_MIN, left / self.rate))


async def wait_for(herald: Herald, notification_id: str, show_progress: bool) -> dict[str, Any]:
    """Dispatch (alongside any running serve/worker) until every delivery is final."""
    stop = asyncio.Event()
    notify = outage_notifier(herald)
    # Registered and beating like a worker: if this command is killed, a live dispatcher takes its
    # claims over within seconds, not when their lease ends.
    worker_id = workers.new_worker_id(workers.COMMAND)
    dispatcher = Dispatcher(herald, worker_id, notify=notify, exclusive=False)
    await asyncio.to_thread(dispatcher.start_checks)
    task = asyncio.create_task(dispatcher.run(stop))
    progress = None
    if show_progress:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
            transient=True,
            console=Console(stderr=True),
        )
        progress.start()
    bar = None
    pace = Pace()
    try:
        while True:
            await asyncio.to_thread(start_due_rungs, herald)
            # A cheap poll (state and open deliveries); the full status, people and delays included,
            # is read once at the end: reading it every half second cost ~7 % of a large fan-out's CPU.
            current = await asyncio.to_thread(notice_state.progress, herald.store, notification_id)
            assert current is not None
            if progress is not None:
                if bar is None:
                    bar = progress.add_task(f"delivering {notification_id}", total=current.total)
                progress.update(bar, completed=current.total - current.left)
            if current.left == 0 and current.state in ("done", "cancelled"):
                break
            if current.left == 0:  # every delivery is final: done now, not at the dispatcher's next round
                finish = notice_state.finish_notifications  # (~0.1 s later)
                if await asyncio.to_thread(finish, herald.store, herald.clock.now(), [notification_id]):
                    break
            if current.left and herald.clock.now() > current.deadline:
                held = await asyncio.to_thread(held_by, herald.store, notification_id)
                if held:  # past the deadline, and only an outage keeps the rest: stop waiting
                    final = await asyncio.to_thread(service.status, herald, notification_id)
                    assert final is not None
                    return {**final, "held_by": [outage.describe() for outage in held]}
            if task.done():
                task.result()
                break
            await asyncio.sleep(pace.next(current.left, herald.clock.now()))
        final = await asyncio.to_thread(service.status, herald, notification_id)
        assert final is not None
        return final
    finally:
        if progress is not None:
            progress.stop()
        stop.set()
        await task
