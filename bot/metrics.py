"""Prometheus metrics: a fresh registry per app, nothing registered at import time.

Two kinds. Read from the database on every scrape (the truth, whichever process did the work):
``herald_deliveries{channel,state}``, ``herald_queue_depth{channel}`` (due and waiting),
``herald_queue_oldest_seconds{channel}``, ``herald_notifications{state}``,
``herald_sla_missed_notifications`` (late, or short of the reach target),
``herald_alerts_unrouted_total`` (alert groups whose route audience selected nobody reachable,
kept in ``key_value``), ``herald_database_up``,
``herald_channel_up{channel}``. Counted by this process: HTTP requests and latency, Slack requests,
429s from Slack, progress edits, announcements, scheduler ticks, and (when a dispatcher runs here)
sends by outcome and reason
(``herald_sends_total{channel,outcome,reason}``), throttle waits and send latency.

Scraping runs database queries, so the web layer calls :func:`render` in a worker thread.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
from sqlalchemy import func, or_, select, union
from sqlalchemy.exc import SQLAlchemyError

from bot.alerts.notify import unrouted_total
from bot.clock import Clock
from bot.engine.health import outages
from bot.engine.workers import STALE_AFTER, WORKER
from bot.people import CANCELLED_LATE, ReachTargets, reach_missed
from bot.store import Store
from bot.tables import CLAIMABLE, DELIVERY_STATES, OPEN_STATES, Delivery, Notification, table_of

log = logging.getLogger("herald.metrics")

DELIVERY = table_of(Delivery)
NOTIFICATION = table_of(Notification)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _ChannelStats(Protocol):
    @property
    def sends(self) -> Tally[tuple[str, str]]: ...  # (outcome, reason) -> count
    @property
    def throttle_wait(self) -> float: ...
    @property
    def latencies(self) -> list[float]: ...


class _Runner(Protocol):
    @property
    def stats(self) -> _ChannelStats: ...


class DispatcherLike(Protocol):
    """What the metrics read from a dispatcher running in this process."""

    @property
    def runners(self) -> Mapping[str, _Runner]: ...


class HeraldMetrics:
    """The metrics of one running app; ``registry`` is what ``/metrics`` renders."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        channels: Sequence[str] = (),
        reach_targets: ReachTargets | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(LedgerCollector(store, clock, channels, reach_targets))
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

    def __init__(
        self,
        store: Store,
        clock: Clock,
        channels: Sequence[str] = (),
        reach_targets: ReachTargets | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.channels = tuple(channels)
        self.reach_targets = reach_targets or ReachTargets.defaults()

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
        rows = _LedgerRows.query(self.store, now, self.reach_targets)
        return [
            *self._delivery_families(rows, now),
            _gauge("herald_notifications", "Notifications by state.", ["state"], rows.by_state),
            _gauge(
                "herald_sla_missed_notifications",
                "Notifications that missed their SLA (a delivery late, expired, or open past the deadline, "
                "or fewer people reached than the reach target).",
                [],
                [((), rows.missed)],
            ),
            _counter(
                "herald_alerts_unrouted",
                "Alert groups whose route audience selected no reachable person (sent to the default route).",
                rows.unrouted,
            ),
            _gauge(
                "herald_dispatcher_up",
                "Dispatchers (serve or worker) with a live heartbeat.",
                ["worker", "host"],
                [(worker, 1) for worker in live_workers_with_hosts(self.store, now)],
            ),
            self._channel_up(),
        ]

    def _channel_up(self) -> Metric:
        """1 per channel unless its breaker is open (:mod:`bot.engine.health`)."""
        down = outages(self.store)
        channels = dict.fromkeys([*self.channels, *down])
        values = [((channel,), 0.0 if channel in down else 1.0) for channel in channels]
        return _gauge(
            "herald_channel_up", "0 while a channel is down (its deliveries held).", ["channel"], values
        )

    def _delivery_families(self, rows: _LedgerRows, now: float) -> list[Metric]:
        """Deliveries by channel and state, and the queue: zeros for every known channel and state."""
        channels = dict.fromkeys([*self.channels, *(channel for channel, _, _ in rows.counts)])
        counted = {(channel, state): count for channel, state, count in rows.counts}
        by_state = [((c, s), counted.get((c, s), 0)) for c in channels for s in _states(c, counted)]
        waiting = {channel: (float(count), now - first_due) for channel, count, first_due in rows.waiting}
        queued = dict.fromkeys([*channels, *waiting], (0.0, 0.0)) | waiting
        depth = [((c,), count) for c, (count, _) in queued.items()]
        oldest = [((c,), max(0.0, age)) for c, (_, age) in queued.items()]
        return [
            _gauge("herald_deliveries", "Deliveries by channel and state.", ["channel", "state"], by_state),
            _gauge("herald_queue_depth", "Deliveries due and waiting to be sent.", ["channel"], depth),
            _gauge(
                "herald_queue_oldest_seconds", "Age of the oldest due, waiting delivery.", ["channel"], oldest
            ),
        ]


def _states(channel: str, counted: Mapping[tuple[str, str], int]) -> list[str]:
    """Every delivery state, then any other state stored for ``channel`` (none in practice)."""
    extra = [state for (c, state) in counted if c == channel and state not in DELIVERY_STATES]
    return [*DELIVERY_STATES, *extra]


def _gauge(name: str, text: str, labels: list[str], values: Iterable[tuple[Sequence[str], float]]) -> Metric:
    family = GaugeMetricFamily(name, text, labels=labels)
    for label_values, value in values:
        family.add_metric(list(label_values), float(value))
    return family


def _counter(name: str, text: str, value: float) -> Metric:
    """A counter kept in the database (exposed as ``<name>_total``)."""
    family = CounterMetricFamily(name, text)
    family.add_metric([], float(value))
    return family


@dataclass(frozen=True)
class _LedgerRows:
    """What one scrape reads from the ledger, in one transaction."""

    counts: list[tuple[str, str, int]]  # channel, state, deliveries
    waiting: list[tuple[str, int, float]]  # channel, due deliveries, the oldest's due time
    by_state: list[tuple[tuple[str], int]]  # notifications by state
    missed: int
    unrouted: int  # alert groups whose route audience selected nobody reachable, ever

    @classmethod
    def query(cls, store: Store, now: float, targets: ReachTargets) -> _LedgerRows:
        with store.begin() as connection:
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
            late = or_(
                DELIVERY.c.sent_at > DELIVERY.c.deadline,
                DELIVERY.c.state == "expired",
                DELIVERY.c.state.in_(OPEN_STATES) & (DELIVERY.c.deadline < now),
                CANCELLED_LATE,
            )
            either = union(select(DELIVERY.c.notification_id).where(late), reach_missed(targets, now))
            missed = connection.execute(select(func.count()).select_from(either.subquery())).scalar_one()
            unrouted = unrouted_total(connection)
        return cls(
            [(str(c), str(s), int(n)) for c, s, n in counts],
            [(str(c), int(n), float(due)) for c, n, due in waiting],
            [((str(state),), int(n)) for state, n in by_state],
            int(missed),
            unrouted,
        )


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
            "Send attempts by this process's dispatcher, by outcome (sent, deferred, failed) and reason.",
            labels=["channel", "outcome", "reason"],
        )
        waits = CounterMetricFamily(
            "herald_throttle_wait_seconds",
            "Seconds the dispatcher waited for throttle tokens.",
            labels=["channel"],
        )
        for channel, runner in self.dispatcher.runners.items():
            stats = runner.stats
            for outcome in ("sent", "deferred", "failed"):  # present from the start, as zeros
                if not any(kind == outcome for kind, _ in stats.sends):
                    sends.add_metric([channel, outcome, ""], 0.0)
            for (outcome, reason), count in sorted(stats.sends.items()):
                sends.add_metric([channel, outcome, reason], float(count))
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
