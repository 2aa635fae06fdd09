"""Storms: what a flood-control summary stands for, in the store.

When flood control folds groups into one summary (:mod:`bot.alerts.flood`), the first group whose
page the summary is becomes its *lead* (``meta.alert_lead`` of the summary notification); the other
groups paged by it are its *followers*:

- escalation follows the summary: followers' chains are stopped when folded, and the lead's chain
  (:mod:`bot.alerts.escalation`) speaks for the whole summary, one notification per tier and per
  reminder, linked to every group of the summary still firing. Acknowledging any of them stops it;
- Slack shows the summary in one message, the lead's: a follower without a message of its own is
  marked :data:`SHOWN_IN` ``+ lead`` in ``slack_ts``, and a change to it edits the lead's message.
  Groups flood control holds back are shown the same way, in the message of their lane's summary
  (or of the first of them), so a storm never posts one Slack message per alert.

Groups a summary re-notified (an update or a repeat) keep their own chain and message. When groups
paged by one summary resolve, they share one resolution notice per flush too.
Functions here are synchronous (database work).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.engine import Connection

from bot.alerts.messages import MAX_LISTED, StormFacts
from bot.alerts.notify import DELIVERY, GROUP, INSTANCE, NOTICE, NOTIFICATION, PERSON, group_facts

SHOWN_IN = "in:"  # slack_ts of a group shown in another group's message: "in:<lead id>"
CHUNK = 500


def fold(connection: Connection, lead: str, followers: Sequence[str]) -> None:
    """The followers' chain is the lead's now, and they are shown in the lead's Slack message."""
    for start in range(0, len(followers), CHUNK):
        connection.execute(
            update(GROUP)
            .where(GROUP.c.id.in_(followers[start : start + CHUNK]))
            .values(next_escalation_at=None, version=GROUP.c.version + 1)
        )
    show_in(connection, lead, followers)


def show_in(connection: Connection, lead: str, group_ids: Sequence[str]) -> None:
    """Groups without a Slack message of their own are shown in ``lead``'s (no post per group)."""
    for start in range(0, len(group_ids), CHUNK):
        connection.execute(
            update(GROUP)
            .where(GROUP.c.id.in_(group_ids[start : start + CHUNK]), GROUP.c.slack_ts.is_(None))
            .values(slack_ts=SHOWN_IN + lead, slack_revision=GROUP.c.revision)
        )


def shown_with(row: Mapping[str, Any]) -> ColumnElement[bool]:
    """The groups shown in ``row``'s Slack message besides itself."""
    return and_(GROUP.c.route_key == row["route_key"], GROUP.c.slack_ts == SHOWN_IN + row["id"])


def summary_led(connection: Connection, group_id: str) -> str | None:
    """The summary notification ``group_id`` leads (it was its page), else None."""
    first = connection.execute(
        select(NOTICE.c.notification_id, NOTICE.c.kind)
        .where(NOTICE.c.group_id == group_id)
        .order_by(NOTICE.c.at, NOTICE.c.notification_id)
        .limit(1)
    ).first()
    if first is None or first.kind != "summary":
        return None
    meta = connection.execute(
        select(NOTIFICATION.c.meta).where(NOTIFICATION.c.id == first.notification_id)
    ).scalar_one_or_none()
    return str(first.notification_id) if json.loads(meta or "{}").get("alert_lead") == group_id else None


def in_summary(summary_id: str) -> ColumnElement[bool]:
    """The groups a summary notification stands for."""
    condition: ColumnElement[bool] = GROUP.c.id.in_(
        select(NOTICE.c.group_id).where(NOTICE.c.notification_id == summary_id)
    )
    return condition


def firing_ids(connection: Connection, where: ColumnElement[bool]) -> list[str]:
    found = connection.execute(select(GROUP.c.id).where(where, GROUP.c.state == "firing")).scalars()
    return [str(value) for value in found]


def storm_facts(connection: Connection, lead: str, route: str, where: ColumnElement[bool]) -> StormFacts:
    """What messages say about the groups ``where`` selects that still fire (the first few listed)."""
    firing = and_(where, GROUP.c.state == "firing")
    rows = connection.execute(
        select(GROUP).where(firing).order_by(GROUP.c.opened_at, GROUP.c.id).limit(MAX_LISTED)
    ).mappings()
    listed = [group_facts(connection, dict(row)) for row in rows]
    groups, truncated = connection.execute(
        select(func.count(), func.coalesce(func.sum(GROUP.c.truncated), 0)).where(firing)
    ).one()
    alerts = connection.execute(
        select(func.count())
        .select_from(INSTANCE)
        .join(GROUP, GROUP.c.id == INSTANCE.c.group_id)
        .where(firing, INSTANCE.c.status == "firing")
    ).scalar_one()
    return StormFacts(lead, route, listed, int(groups), int(alerts) + int(truncated))


def acknowledged(connection: Connection, where: ColumnElement[bool]) -> bool:
    """Whether someone acknowledged any group ``where`` selects (that stops a summary's chain)."""
    found = connection.execute(
        select(GROUP.c.id).where(where, GROUP.c.acked_at.is_not(None)).limit(1)
    ).first()
    return found is not None


def paged_by_summary(connection: Connection, group_ids: Sequence[str]) -> dict[str, str]:
    """Groups among ``group_ids`` whose page was a flood-control summary -> that summary's id."""
    pages: dict[str, tuple[str, str]] = {}
    for start in range(0, len(group_ids), CHUNK):
        found = connection.execute(
            select(NOTICE.c.group_id, NOTICE.c.kind, NOTICE.c.notification_id)
            .where(
                NOTICE.c.group_id.in_(group_ids[start : start + CHUNK]),
                NOTICE.c.kind.in_(("opened", "summary")),
            )
            .order_by(NOTICE.c.at, NOTICE.c.notification_id)
        )
        for group_id, kind, notification_id in found:
            pages.setdefault(str(group_id), (str(kind), str(notification_id)))
    return {group_id: nid for group_id, (kind, nid) in pages.items() if kind == "summary"}


def notified_about(group_ids: Sequence[str]) -> ColumnElement[bool]:
    """Everyone any notification about these groups was addressed to (every tier; not resolutions)."""
    notices = select(NOTICE.c.notification_id).where(
        NOTICE.c.group_id.in_(group_ids), NOTICE.c.kind != "resolution"
    )
    return and_(
        PERSON.c.active.is_(True),
        PERSON.c.id.in_(select(DELIVERY.c.person_id).where(DELIVERY.c.notification_id.in_(notices))),
    )
