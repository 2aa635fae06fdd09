"""Channel outages: a circuit breaker per channel that the whole cluster shares through the database.

A send that fails with :class:`channels.base.ChannelDownError` (credentials refused, a sender the
account does not own, the provider unreachable) marks its channel down. While it is down:

- no dispatcher claims for the channel; its due deliveries are ``deferred`` with reason
  ``channel_down`` (never failed, never suppressed);
- one dispatcher at a time sends a single delivery as a probe, at most :data:`PROBE_MAX` seconds
  apart, backing off from :data:`PROBE_FIRST`;
- the dispatcher that flipped the breaker tells operators once (an ERROR line and, through the
  dispatcher's notifier, a post to ``slack.alert_channel``); ``herald_channel_up`` reads the row.

The first send that succeeds closes the breaker: the held deliveries are claimed again in deadline
order, as any other due work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import Connection, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.app import Herald
from bot.store import Store
from bot.tables import CLAIMABLE, OPEN_STATES, ChannelHealth, Delivery, DeliveryState, table_of
from channels.base import ChannelDownError, DeliveryError, Receipt

log = logging.getLogger("herald.dispatcher")

HEALTH = table_of(ChannelHealth)
DELIVERY = table_of(Delivery)

CHANNEL_DOWN = "channel_down"  # the reason held deliveries carry
PROBE_FIRST = 2.0
PROBE_MAX = 60.0


@dataclass(frozen=True, slots=True)
class Outage:
    """A channel that is down: since when, why, and when the next probe is due."""

    channel: str
    since: float
    reason: str
    detail: str
    probe_at: float

    def describe(self) -> str:
        return f"the {self.channel} channel is down ({self.reason}: {self.detail})".replace(": )", ")")


def probe_delay(probes: int) -> float:
    """Seconds before the next probe after ``probes`` failed ones: 2, 4, 8... at most a minute."""
    return float(min(PROBE_MAX, PROBE_FIRST * 2.0 ** max(0, probes)))


def mark_down(store: Store, channel: str, reason: str, detail: str, now: float) -> bool:
    """Open the breaker; True for the one caller that opened it (it tells operators).

    In the same transaction the channel's due deliveries become ``deferred`` with reason
    ``channel_down``, so status and reports show them held rather than merely waiting.
    """
    insert = (sqlite.insert if store.is_sqlite else postgresql.insert)(HEALTH)
    with store.begin() as connection:
        connection.execute(
            insert.values(
                channel=channel, reason="", detail="", probe_at=0.0, probes=0
            ).on_conflict_do_nothing(index_elements=["channel"])
        )
        opened = connection.execute(
            update(HEALTH)
            .where(HEALTH.c.channel == channel, HEALTH.c.down_since.is_(None))
            .values(down_since=now, reason=reason, detail=detail[:500], probe_at=now + PROBE_FIRST, probes=0)
        ).rowcount
        if opened:
            _hold_due(connection, channel, now)
    return bool(opened)


def hold_due(store: Store, channel: str, now: float) -> None:
    """Mark the channel's due deliveries held (``deferred``, ``channel_down``): those given back
    unsent after the breaker opened."""
    with store.begin() as connection:
        _hold_due(connection, channel, now)


def _hold_due(connection: Connection, channel: str, now: float) -> None:
    connection.execute(
        update(DELIVERY)
        .where(DELIVERY.c.channel == channel, DELIVERY.c.state.in_(CLAIMABLE), DELIVERY.c.due_at <= now)
        .values(state=DeliveryState.DEFERRED.value, reason=CHANNEL_DOWN)
    )


def mark_up(store: Store, channel: str, now: float) -> Outage | None:
    """Close the breaker; the outage it ended, for the one caller that closed it, else None."""
    with store.begin() as connection:
        row = connection.execute(
            select(HEALTH).where(HEALTH.c.channel == channel, HEALTH.c.down_since.is_not(None))
        ).first()
        if row is None:
            return None
        closed = connection.execute(
            update(HEALTH)
            .where(HEALTH.c.channel == channel, HEALTH.c.down_since == row.down_since)
            .values(down_since=None, probes=0, probe_at=now)
        ).rowcount
    return _outage(row) if closed else None


def take_probe(store: Store, channel: str, now: float, hold_for: float, at_once: bool = False) -> bool:
    """Whether this caller sends the next probe (one caller per due probe, cluster-wide).

    The next probe is pushed ``hold_for`` ahead meanwhile, so a prober that dies is replaced.
    ``at_once`` probes before the backoff ends: a process that just started may have new settings.
    """
    due = HEALTH.c.probe_at <= (now + PROBE_MAX if at_once else now)
    with store.begin() as connection:
        taken = connection.execute(
            update(HEALTH)
            .where(and_(HEALTH.c.channel == channel, HEALTH.c.down_since.is_not(None), due))
            .values(probe_at=now + hold_for)
        ).rowcount
    return bool(taken)


def probe_failed(store: Store, channel: str, reason: str, detail: str, now: float) -> None:
    """Back off before the next probe (doubling, at most :data:`PROBE_MAX` apart)."""
    with store.begin() as connection:
        probes = connection.execute(select(HEALTH.c.probes).where(HEALTH.c.channel == channel)).scalar() or 0
        connection.execute(
            update(HEALTH)
            .where(HEALTH.c.channel == channel, HEALTH.c.down_since.is_not(None))
            .values(
                probes=probes + 1, probe_at=now + probe_delay(probes + 1), reason=reason, detail=detail[:500]
            )
        )


def outages(store: Store) -> dict[str, Outage]:
    """The channels that are down now."""
    with store.begin() as connection:
        rows = connection.execute(select(HEALTH).where(HEALTH.c.down_since.is_not(None))).all()
    return {row.channel: _outage(row) for row in rows}


def held_by(store: Store, notification_id: str) -> list[Outage]:
    """The outages holding every open delivery of a notification; empty when anything else is open.

    An open delivery on a channel that is down is held, whatever its state says: no dispatcher claims
    it but the probe.
    """
    with store.begin() as connection:
        channels = set(
            connection.execute(
                select(DELIVERY.c.channel)
                .where(DELIVERY.c.notification_id == notification_id, DELIVERY.c.state.in_(OPEN_STATES))
                .distinct()
            ).scalars()
        )
    down = outages(store) if channels else {}
    return [down[channel] for channel in sorted(channels)] if channels and channels <= set(down) else []


def _outage(row: object) -> Outage:
    return Outage(
        channel=str(row.channel),  # type: ignore[attr-defined]
        since=float(row.down_since),  # type: ignore[attr-defined]
        reason=str(row.reason),  # type: ignore[attr-defined]
        detail=str(row.detail),  # type: ignore[attr-defined]
        probe_at=float(row.probe_at),  # type: ignore[attr-defined]
    )


OutageNotifier = Callable[["Outage", bool], Awaitable[None]]
"""Tells operators that a channel went down (``True``) or came back (``False``)."""


class Breaker:
    """One runner's view of its channel's breaker: holds sends while down and runs the probes."""

    def __init__(self, herald: Herald, channel: str, notify: OutageNotifier | None = None) -> None:
        self.herald = herald
        self.channel = channel
        self.notify = notify
        self.outage: Outage | None = None
        self.probing: int | None = None  # the delivery sent as the probe
        self.started = False  # the first probe after start goes at once (settings may be fixed)

    def holds(self, delivery_id: int) -> bool:
        """Whether a send must not start: the channel is down and this is not the probe."""
        return self.outage is not None and delivery_id != self.probing

    async def refresh(self) -> None:
        """Follow the breaker as the cluster sees it (another worker may have opened or closed it)."""
        self.outage = (await asyncio.to_thread(outages, self.herald.store)).get(self.channel)

    async def take_probe(self, hold_for: float) -> float:
        """0 when this runner sends the next probe now, else the seconds to wait before asking again."""
        assert self.outage is not None
        now, at_once, self.started = self.herald.clock.now(), not self.started, True
        if now < self.outage.probe_at and not at_once:
            return self.outage.probe_at - now
        if await asyncio.to_thread(take_probe, self.herald.store, self.channel, now, hold_for, at_once):
            return 0.0
        await self.refresh()  # another dispatcher probes
        return PROBE_FIRST

    def concerned(self, delivery_id: int, result: Receipt | DeliveryError) -> bool:
        """Whether :meth:`observe` has anything to do with this send's result (most sends: no)."""
        return self.outage is not None or delivery_id == self.probing or isinstance(result, ChannelDownError)

    async def observe(self, delivery_id: int, result: Receipt | DeliveryError) -> None:
        """Open the breaker on a channel-down error; close it when the channel answers."""
        was_probe = delivery_id == self.probing
        if was_probe:
            self.probing = None
        if isinstance(result, ChannelDownError):
            await self._down(result, was_probe)
        elif self.outage is not None:
            await self._up()

    async def _down(self, error: ChannelDownError, was_probe: bool) -> None:
        store, now = self.herald.store, self.herald.clock.now()
        if self.outage is not None:
            if was_probe:
                await asyncio.to_thread(probe_failed, store, self.channel, error.reason, error.detail, now)
                await self.refresh()
            return
        self.outage = outage = Outage(self.channel, now, error.reason, error.detail, now + PROBE_FIRST)
        if await asyncio.to_thread(mark_down, store, self.channel, error.reason, error.detail, now):
            log.error(
                "%s; its deliveries are held (deferred, channel_down) and probed at most %.0fs apart",
                outage.describe(),
                PROBE_MAX,
            )
            await self._tell(outage, True)

    async def _up(self) -> None:
        self.outage = None
        ended = await asyncio.to_thread(mark_up, self.herald.store, self.channel, self.herald.clock.now())
        if ended is not None:
            down_for = self.herald.clock.now() - ended.since
            log.warning(
                "the %s channel answers again after %.0fs; held deliveries go out", self.channel, down_for
            )
            await self._tell(ended, False)

    async def _tell(self, outage: Outage, down: bool) -> None:
        if self.notify is None:
            return
        try:
            await self.notify(outage, down)
        except Exception:  # telling operators must never stop the dispatcher
            log.warning("telling operators about the %s channel failed", self.channel, exc_info=True)
