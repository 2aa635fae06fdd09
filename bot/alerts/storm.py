"""Storms: what a flood-control summary stands for, in the store.

When flood control folds groups into one summary (:mod:`bot.alerts.flood`), the first group whose
page the summary is becomes its *lead* (``meta.alert_lead`` of the summary notification); the other
groups paged by it are its *followers*:

- escalation follows the summary: followers' chains are stopped when folded, and the lead's chain
  (:mod:`bot.alerts.escalation`) speaks for the whole summary, one notification per tier and per
  reminder, linked to every group of the summary still firing. Acknowledging any of them stops it;
- Slack shows the summary in one message, the lead's: a follower without a message of its own is
  marked :data:`SHOWN_IN` ``+ lead`` in ``slack_ts``, and a change to it edits the lead's message.

Groups a summary re-notified (an update or a repeat) keep their own chain and message.
Functions here are synchronous (database work).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from bot.alerts.messages import MAX_LISTED, StormFacts
from bot.alerts.notify import GROUP, INSTANCE, NOTICE, NOTIFICATION, group_facts

SHOWN_IN = "in:"  # slack_ts of a follower shown in its lead's message: "in:<lead id>"


def fold(connection: Connection, lead: str, followers: Sequence[str]) -> None:
    """The followers' chain is the lead's now, and they are shown in the lead's Slack message."""
    if not followers:
        return
    connection.execute(
        update(GROUP)
        .where(GROUP.c.id.in_(followers))
        .values(next_escalation_at=None, version=GROUP.c.version + 1)
    )
    connection.execute(
        update(GROUP)
        .where(GROUP.c.id.in_(followers), GROUP.c.slack_ts.is_(None))
        .values(slack_ts=SHOWN_IN + lead, slack_revision=GROUP.c.revision)
    )


def storm_of(connection: Connection, group_id: str) -> list[str] | None:
    """The groups of the summary ``group_id`` leads (its page), oldest first; None when it leads none."""
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
    if json.loads(meta or "{}").get("alert_lead") != group_id:
        return None
    return [
        str(value)
        for value in connection.execute(
            select(NOTICE.c.group_id)
            .join(GROUP, GROUP.c.id == NOTICE.c.group_id)
            .where(NOTICE.c.notification_id == first.notification_id)
            .order_by(GROUP.c.opened_at, GROUP.c.id)
        ).scalars()
    ]


def storm_facts(connection: Connection, lead: str, route: str, group_ids: Sequence[str]) -> StormFacts:
    """What messages say about the groups of a summary still firing (the first few listed)."""
    firing = (GROUP.c.id.in_(group_ids), GROUP.c.state == "firing")
    rows = connection.execute(
        select(GROUP).where(*firing).order_by(GROUP.c.opened_at, GROUP.c.id).limit(MAX_LISTED)
    ).mappings()
    listed = [group_facts(connection, dict(row)) for row in rows]
    groups, truncated = connection.execute(
        select(func.count(), func.coalesce(func.sum(GROUP.c.truncated), 0)).where(*firing)
    ).one()
    alerts = connection.execute(
        select(func.count())
        .select_from(INSTANCE)
        .join(GROUP, GROUP.c.id == INSTANCE.c.group_id)
        .where(*firing, INSTANCE.c.status == "firing")
    ).scalar_one()
    return StormFacts(lead, route, listed, int(groups), int(alerts) + int(truncated))


def acknowledged(connection: Connection, group_ids: Sequence[str]) -> bool:
    """Whether someone acknowledged any group of the summary (that stops its chain)."""
    found = connection.execute(
        select(GROUP.c.id).where(GROUP.c.id.in_(group_ids), GROUP.c.acked_at.is_not(None)).limit(1)
    ).first()
    return found is not None
