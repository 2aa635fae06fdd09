"""The alert part of ``herald report``: per alert group, how fast it reached people and was acknowledged.

Per group: ``first_delivery_s`` (from receipt to the first message handed to a provider),
``ack_s`` (receipt to acknowledgement), ``ack_within_s`` (the frozen target), ``ack_met``:
True when acknowledged within the target; False when acknowledged late, or not acknowledged once
the target passed while it was firing; None when there is no target, or the group resolved on its
own before the target passed, or the target has not passed yet. ``tiers_paged`` lists the
escalation tiers notified. ``people`` and ``reach`` count the people its pages were for (every
notification about the group but the resolution notice; :mod:`bot.people`: a person reached by any
page in time is reached). Summary (:func:`sla_summary`, which ``herald report`` also uses for
delivery SLAs): the share of judged groups acknowledged within target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from bot.alerts.models import Policy
from bot.alerts.notify import DELIVERY, GROUP, NOTICE
from bot.app import Herald
from bot.people import People, people_query


def ack_met(row: Mapping[str, Any], ack_within: float | None, now: float) -> bool | None:
    """Was the group acknowledged within ``ack_within`` of its receipt? (None: not judged.)"""
    if not ack_within:
        return None
    deadline = row["opened_at"] + ack_within
    if row["acked_at"] is not None:
        return bool(row["acked_at"] <= deadline)
    ended = row["resolved_at"] if row["resolved_at"] is not None else now
    if ended <= deadline:
        return None
    return False


def sla_summary(verdicts: Iterable[bool | None]) -> dict[str, Any]:
    """Count SLA verdicts (True met, False missed, None not judged): ``judged``, ``met``, ``missed``
    and ``met_pct`` (the share met, in percent; None when nothing was judged).

    The one summary for both reports: notifications' delivery SLA and alert groups' ack SLA."""
    judged = [verdict for verdict in verdicts if verdict is not None]
    met = sum(1 for verdict in judged if verdict)
    return {
        "judged": len(judged),
        "met": met,
        "missed": len(judged) - met,
        "met_pct": round(100.0 * met / len(judged), 1) if judged else None,
    }


def alert_report(herald: Herald, since: float) -> dict[str, Any]:
    """Every alert group opened since ``since``, with its timings, and the ack SLA summary."""
    now = herald.clock.now()
    with herald.store.begin() as connection:
        rows = [
            dict(row)
            for row in connection.execute(
                select(GROUP).where(GROUP.c.opened_at >= since).order_by(GROUP.c.opened_at)
            ).mappings()
        ]
        ids = [row["id"] for row in rows]
        first_sent = _first_sent(connection, ids) if ids else {}
        notices = _notices(connection, ids) if ids else {}
        people = _people(connection, ids) if ids else {}
    items = [_item(row, first_sent.get(row["id"]), notices.get(row["id"], []), now) for row in rows]
    total = People()
    for item in items:
        found = people.get(item["id"], People())
        item.update(people=found.as_json(), reach=found.reach)
        total += found
    return {
        "since": since,
        "groups": len(items),
        "firing": sum(1 for item in items if item["state"] == "firing"),
        "acknowledged": sum(1 for item in items if item["acked_at"] is not None),
        "ack_sla": sla_summary(item["ack_met"] for item in items),
        "people": {**total.as_json(), "reach": total.reach},
        "items": items,
    }


def _first_sent(connection: Connection, ids: list[str]) -> dict[str, float]:
    """Per group: when its first message was handed to a provider."""
    return {
        str(gid): float(at)
        for gid, at in connection.execute(
            select(NOTICE.c.group_id, func.min(DELIVERY.c.sent_at))
            .select_from(NOTICE.join(DELIVERY, DELIVERY.c.notification_id == NOTICE.c.notification_id))
            .where(NOTICE.c.group_id.in_(ids), DELIVERY.c.sent_at.is_not(None))
            .group_by(NOTICE.c.group_id)
        ).all()
        if at is not None
    }


def _people(connection: Connection, ids: list[str]) -> dict[str, People]:
    """Per group: the people its pages were for (one aggregate query for every group)."""
    pages = NOTICE.join(DELIVERY, DELIVERY.c.notification_id == NOTICE.c.notification_id)
    where = and_(NOTICE.c.group_id.in_(ids), NOTICE.c.kind != "resolution")
    rows = connection.execute(people_query(pages, where, [NOTICE.c.group_id])).all()
    return {str(group_id): People(*(int(n) for n in counts)) for group_id, *counts in rows}


def _notices(connection: Connection, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Per group: its notices, oldest first."""
    notices: dict[str, list[dict[str, Any]]] = {}
    for notice in connection.execute(
        select(NOTICE).where(NOTICE.c.group_id.in_(ids)).order_by(NOTICE.c.at)
    ).mappings():
        notices.setdefault(notice["group_id"], []).append(dict(notice))
    return notices


def _item(
    row: Mapping[str, Any], first_sent: float | None, notices: list[dict[str, Any]], now: float
) -> dict[str, Any]:
    policy = Policy.from_json(row["policy"])
    opened = row["opened_at"]
    return {
        "id": row["id"],
        "title": row["title"],
        "severity": row["severity"],
        "route": row["route"],
        "audience": policy.audience,
        "state": row["state"],
        "opened_at": opened,
        "resolved_at": row["resolved_at"],
        "acked_at": row["acked_at"],
        "acked_by": row["acked_by"],
        "first_delivery_s": (first_sent - opened) if first_sent is not None else None,
        "ack_s": (row["acked_at"] - opened) if row["acked_at"] is not None else None,
        "ack_within_s": policy.ack_within,
        "ack_met": ack_met(row, policy.ack_within, now),
        "tiers_paged": [
            {"tier": n["step"], "audience": n["audience"], "at": n["at"]}
            for n in notices
            if n["kind"] == "escalation"
        ],
        "reminders": sum(1 for n in notices if n["kind"] == "reminder"),
        "notifications": [n["notification_id"] for n in notices],
        "held_back": int(row["held_back"] or 0),
    }
