"""Prometheus metrics: a fresh registry per app, nothing registered at import time.

Two kinds. Read from the database on every scrape (the truth, whichever process did the work):
``herald_deliveries{channel,state}``, ``herald_queue_depth{channel}`` (due and waiting),
``herald_queue_oldest_seconds{channel}``, ``herald_notifications{state}``,
``herald_sla_missed_notifications``, ``herald_database_up``. Counted by this process:
HTTP requests and latency, Slack requests, 429s from Slack, progress edits, announcements, scheduler
ticks, and (when a dispatcher runs here) sends by outcome, throttle waits and send latency.

Scraping runs database queries, so the web layer calls :func:`render` in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import distinct, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from bot.clock import Clock
from bot.engine.workers import STALE_AFTER, WORKER
from bot.store import Store
from bot.tables import CLAIMABLE, DELIVERY_STATES, Delivery, Notification

log = logging.getLogger("herald.metrics")

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
NOTIFICATION = Notification.__table__  # type: ignore[attr-defined]
OPEN_STATES = ("queued", "deferred", "sending")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _ChannelStats(Protocol):
    sent: int
    failed: int
    deferred: int
    throttle_wait: float
    latencies: list[float]


class _Runner(Protocol):
    @property
    def stats(self) -> _ChannelStats: ...


class DispatcherLike(Protocol):
    """What the metrics read from a dispatcher running in this process."""

    @property
    def runners(self) -> Mapping[str, _Runner]: ...


class HeraldMetrics:
    """The metrics of one running app; ``registry`` is what ``/metrics`` renders."""

    def __init__(self, store: Store, clock: Clock, channels: Sequence[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(LedgerCollector(store, clock, channels))
        self._dispatcher_collector = DispatcherCollector()
        self.registry.register(self._dispatcher_collector)
        r = self.registry
        self.http_requests = Counter(
            "herald_http_requests", "HTTP requests served.", ["route", "method", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "herald_http_request_seconds",
            "HTTP request latency.",
            ["route"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.slack_requests = Counter(
            "herald_slack_requests",
            "Slack commands, actions, views and events handled.",
            ["kind"],
            registry=r,
        )
        self.slack_refusals = Counter(
            "herald_slack_refusals", "Slack users refused because they may not announce.", registry=r
        )
        self.slack_rate_limited = Counter(
            "herald_slack_rate_limited", "Slack Web API answers of 429 (waited out).", ["method"], registry=r
        )
        self.slack_progress_updates = Counter(
            "herald_slack_progress_updates", "Progress message edits (chat.update).", registry=r
        )
        self.announcements = Counter(
            "herald_announcements", "Announcements stored from this process.", ["source"], registry=r
        )
        self.scheduler_ticks = Counter("herald_scheduler_ticks", "Scheduler ticks run.", ["job"], registry=r)
        self.send_seconds = Histogram(
            "herald_send_seconds",
            "Time one send took (hand-over to the provider), by channel.",
            ["channel"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )

    def attach_dispatcher(self, dispatcher: DispatcherLike) -> None:
        """Count this dispatcher's sends and throttle waits, and feed its latencies to the histogram."""
        self._dispatcher_collector.dispatcher = dispatcher
        self._dispatcher_collector.histogram = self.send_seconds

    def render(self) -> bytes:
        """The text exposition format; runs database queries (call it off the event loop)."""
        return generate_latest(self.registry)


def live_workers_with_hosts(store: Store, now: float) -> list[tuple[str, str]]:
    with store.begin() as connection:
        return [
            (str(worker_id), str(host))
            for worker_id, host in connection.execute(
                select(WORKER.c.id, WORKER.c.host).where(WORKER.c.heartbeat_at >= now - STALE_AFTER)
            )
        ]


class LedgerCollector(Collector):
    """Delivery and notification counts from the database, at scrape time (zeros for ``channels``)."""

    def __init__(self, store: Store, clock: Clock, channels: Sequence[str] = ()) -> None:
        self.store = store
        self.clock = clock
        self.channels = tuple(channels)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # dynamic: nothing to describe without a query

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("herald_database_up", "1 when the last scrape could read the database.")
        try:
            families = self._read(self.clock.now())
        except SQLAlchemyError as exc:
            log.warning("metrics: database unreadable: %s", exc.__class__.__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    def _read(self, now: float) -> list[Metric]:
        deliveries = GaugeMetricFamily(
            "herald_deliveries", "Deliveries by channel and state.", labels=["channel", "state"]
        )
        depth = GaugeMetricFamily(
            "herald_queue_depth", "Deliveries due and waiting to be sent.", labels=["channel"]
        )
        oldest = GaugeMetricFamily(
            "herald_queue_oldest_seconds", "Age of the oldest due, waiting delivery.", labels=["channel"]
        )
        notifications = GaugeMetricFamily("herald_notifications", "Notifications by state.", labels=["state"])
        missed = GaugeMetricFamily(
            "herald_sla_missed_notifications",
            "Notifications that missed their SLA (a delivery late, expired, or open past the deadline).",
        )
        with self.store.begin() as connection:
            counts = connection.execute(
                select(DELIVERY.c.channel, DELIVERY.c.state, func.count()).group_by(
                    DELIVERY.c.channel, DELIVERY.c.state
                )
            ).all()
            waiting = connection.execute(
                select(DELIVERY.c.channel, func.count(), func.min(DELIVERY.c.due_at))
                .where(DELIVERY.c.state.in_(CLAIMABLE), DELIVERY.c.due_at <= now)
                .group_by(DELIVERY.c.channel)
            ).all()
            by_state = connection.execute(
                select(NOTIFICATION.c.state, func.count()).group_by(NOTIFICATION.c.state)
            ).all()
            missed_count = connection.execute(
                select(func.count(distinct(DELIVERY.c.notification_id))).where(
                    or_(
                        DELIVERY.c.sent_at > DELIVERY.c.deadline,
                        DELIVERY.c.state == "expired",
                        DELIVERY.c.state.in_(OPEN_STATES) & (DELIVERY.c.deadline < now),
                    )
                )
            ).scalar_one()
        seen: dict[str, set[str]] = {channel: set() for channel in self.channels}
        for channel, state, count in counts:
            deliveries.add_metric([channel, state], float(count))
            seen.setdefault(channel, set()).add(state)
        for channel, states in seen.items():
            for state in DELIVERY_STATES:
                if state not in states:
                    deliveries.add_metric([channel, state], 0.0)
        waiting_channels = set()
        for channel, count, first_due in waiting:
            waiting_channels.add(channel)
            depth.add_metric([channel], float(count))
            oldest.add_metric([channel], max(0.0, now - float(first_due)))
        for channel in set(seen) - waiting_channels:
            depth.add_metric([channel], 0.0)
            oldest.add_metric([channel], 0.0)
        for state, count in by_state:
            notifications.add_metric([state], float(count))
        missed.add_metric([], float(missed_count))
        dispatchers = GaugeMetricFamily(
            "herald_dispatcher_up",
            "Dispatchers (serve or worker) with a live heartbeat.",
            labels=["worker", "host"],
        )
        for worker_id, host in live_workers_with_hosts(self.store, now):
            dispatchers.add_metric([worker_id, host], 1.0)
        return [deliveries, depth, oldest, notifications, missed, dispatchers]


class DispatcherCollector(Collector):
    """Sends and throttle waits of the dispatcher in this process (none attached: nothing)."""

    def __init__(self) -> None:
        self.dispatcher: DispatcherLike | None = None
        self.histogram: Histogram | None = None
        self._observed: dict[str, int] = {}

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        if self.dispatcher is None:
            return
        sends = CounterMetricFamily(
            "herald_sends",
            "Send attempts by this process's dispatcher, by outcome.",
            labels=["channel", "outcome"],
        )
        waits = CounterMetricFamily(
            "herald_throttle_wait_seconds",
            "Seconds the dispatcher waited for throttle tokens.",
            labels=["channel"],
        )
        for channel, runner in self.dispatcher.runners.items():
            stats = runner.stats
            sends.add_metric([channel, "sent"], float(stats.sent))
            sends.add_metric([channel, "deferred"], float(stats.deferred))
            sends.add_metric([channel, "failed"], float(stats.failed))
            waits.add_metric([channel], float(stats.throttle_wait))
            self._observe_latencies(channel, stats.latencies)
        yield sends
        yield waits

    def _observe_latencies(self, channel: str, latencies: list[float]) -> None:
        if self.histogram is None:
            return
        seen = self._observed.get(channel, 0)
        if seen > len(latencies):  # the list was trimmed: start over from its end
            seen = len(latencies)
        for value in latencies[seen:]:
            self.histogram.labels(channel=channel).observe(value)
        self._observed[channel] = len(latencies)
