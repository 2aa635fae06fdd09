"""The delivery and SLA report over many notifications (``herald report``, the demo's last page):
per channel and state, people and reach, SLA misses and their causes, the channel outages holding
deliveries now, alert ack SLAs, who sent what, and bounces."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from bot.app import Herald
from bot.engine.delays import miss_causes
from bot.engine.health import outages
from bot.people import People
from bot.recipients.bounce_state import bounce_summary
from bot.service import recent
from bot.tables import Attempt, Delivery, Notification, table_of

ATTEMPT = table_of(Attempt)
DELIVERY = table_of(Delivery)
NOTIFICATION = table_of(Notification)


def report(herald: Herald, since: float) -> dict[str, Any]:
    """Delivery and SLA report over every notification created since ``since``, with alert ack SLAs."""
    from bot.alerts.report import alert_report, sla_summary

    items = recent(herald, limit=0, since=since)
    totals: dict[str, dict[str, int]] = {}
    people = People()
    for item in items:
        people += People(**item["people"])
        for channel, states in item["channels"].items():
            bucket = totals.setdefault(channel, {})
            for state, count in states.items():
                bucket[state] = bucket.get(state, 0) + count
    return {
        "since": since,
        "notifications": len(items),
        "channels": totals,
        "people": {**people.as_json(), "reach": people.reach},
        "sla": {**sla_summary(item["sla"]["met"] for item in items), "causes": miss_causes(items)},
        "channels_down": {channel: outage.describe() for channel, outage in outages(herald.store).items()},
        "items": items,
        "alerts": alert_report(herald, since),
        "workers": sent_by_worker(herald, since),
        "bounces": bounces_since(herald, since),
    }


def bounces_since(herald: Herald, since: float) -> dict[str, Any]:
    with herald.store.begin() as connection:
        return bounce_summary(connection, DELIVERY, NOTIFICATION, since)


def sent_by_worker(herald: Herald, since: float) -> dict[str, dict[str, int]]:
    """Who sent what: outcomes per dispatcher (serve/worker id) since ``since``. Failures and retries
    are attempt rows; sends are the deliveries' ``sent_by`` (and the attempt rows of older versions)."""
    result: dict[str, dict[str, int]] = {}
    with herald.store.begin() as connection:
        rows = connection.execute(
            select(ATTEMPT.c.worker, ATTEMPT.c.outcome, func.count())
            .where(ATTEMPT.c.at >= since)
            .group_by(ATTEMPT.c.worker, ATTEMPT.c.outcome)
        ).all()
        sent = connection.execute(
            select(DELIVERY.c.sent_by, func.count())
            .where(DELIVERY.c.sent_by.is_not(None), DELIVERY.c.sent_at >= since)
            .group_by(DELIVERY.c.sent_by)
        ).all()
    for worker, outcome, count in rows:
        result.setdefault(str(worker), {})[str(outcome)] = int(count)
    for worker, count in sent:
        counts = result.setdefault(str(worker), {})
        counts["sent"] = counts.get("sent", 0) + int(count)
    return result
