"""Every cap on a channel's sends: the day's counter, ``daily_cap`` and the warm-up ramp.

``channel_counter`` counts claimed sends per channel and UTC day (a release gives them back); the claim
locks and bumps it in its own transaction (:func:`bot.engine.ledger.claim`), so a cap holds across
workers and restarts. Today's cap is the smaller of ``daily_cap`` and the warm-up ramp.

A new sending domain or number that sends a lot at once is treated as a spammer, so a warm-up
schedule (``smtp.warmup = [500, 1000, 2000, 5000]``) caps day 0 (the first UTC day anything was
sent on the channel), day 1, and so on; after the list ends only ``daily_cap`` holds (0 = none).
The first day comes from ``channel_counter``, so the ramp survives restarts and is shared by every
worker. Sends beyond today's cap wait for the next UTC day (the claim stops short).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel

from bot.channel_specs import spec
from bot.config import Settings
from bot.store import Store
from bot.tables import ChannelCounter

COUNTER = SQLModel.metadata.tables[ChannelCounter.__tablename__]

_lock = threading.Lock()
_first_days: dict[tuple[str, str], str] = {}  # (store url, channel) -> first day; it never changes


def schedule(settings: Settings, channel: str) -> tuple[int, ...]:
    """The channel's warm-up caps per day (config ``smtp.warmup`` / ``twilio.warmup``; default none)."""
    return tuple(spec(channel).settings(settings).warmup)


def _day(at: float) -> date:
    return datetime.fromtimestamp(at, UTC).date()


def day_of(at: float) -> str:
    """The UTC day of ``at`` as ``channel_counter`` keys it (``YYYY-MM-DD``)."""
    return _day(at).isoformat()


def bump_counter(store: Store, connection: Any, channel: str, day: str, count: int) -> None:
    """Add ``count`` (negative: give back) to the channel's sends on ``day``."""
    dialect_insert = sqlite.insert if store.is_sqlite else postgresql.insert
    statement = dialect_insert(COUNTER).values(channel=channel, day=day, sent=count)
    statement = statement.on_conflict_do_update(
        index_elements=["channel", "day"], set_={"sent": COUNTER.c.sent + count}
    )
    connection.execute(statement)


def lock_counter(store: Store, connection: Any, channel: str, day: str) -> int:
    """Today's reserved sends, with the counter row locked until the transaction ends."""
    bump_counter(store, connection, channel, day, 0)
    query = select(COUNTER.c.sent).where(COUNTER.c.channel == channel, COUNTER.c.day == day)
    if not store.is_sqlite:
        query = query.with_for_update()
    return int(connection.execute(query).scalar_one())


def sent_today(store: Store, channel: str, now: float) -> int:
    """Sends claimed on ``channel`` in the UTC day of ``now`` (what today's cap is checked against)."""
    with store.begin() as connection:
        value = connection.execute(
            select(COUNTER.c.sent).where(COUNTER.c.channel == channel, COUNTER.c.day == day_of(now))
        ).scalar_one_or_none()
    return int(value or 0)


def first_day(store: Store, channel: str) -> str | None:
    """The first UTC day anything was sent on ``channel`` (``YYYY-MM-DD``), or None."""
    key = (store.url, channel)
    with _lock:
        known = _first_days.get(key)
    if known is not None:
        return known
    with store.begin() as connection:
        found = connection.execute(
            select(func.min(COUNTER.c.day)).where(COUNTER.c.channel == channel, COUNTER.c.sent > 0)
        ).scalar()
    if found is not None:
        with _lock:
            _first_days[key] = str(found)
    return str(found) if found is not None else None


def ramp_cap(ramp: Sequence[int], first: str | None, now: float) -> int | None:
    """The warm-up cap for the day of ``now`` (pure); None once the ramp is over or without one."""
    if not ramp:
        return None
    index = 0 if first is None else (_day(now) - date.fromisoformat(first)).days
    index = max(0, index)  # a clock set back before the first day still gets day 0
    if index < len(ramp):
        return ramp[index]
    return None


def cap_today(store: Store, channel: str, now: float, daily_cap: int, ramp: Sequence[int]) -> int | None:
    """Today's most sends on ``channel`` (None: no cap)."""
    caps = [daily_cap] if daily_cap > 0 else []
    if ramp:
        warm = ramp_cap(ramp, first_day(store, channel), now)
        if warm is not None:
            caps.append(warm)
    return min(caps) if caps else None
