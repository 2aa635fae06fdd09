"""Which notifications the Home tab shows whom (SPEC, Slack): announcers all, a member their own.

A member's own are the notifications with a delivery to a person whose ``slack_user_id`` is the
member's Slack user id (a member the directory does not link to Slack has none). Titles of others'
notifications, security ones included, are never shown to a member.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select

from bot import service
from bot.app import Herald
from bot.tables import Delivery, Notification, Person

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
NOTIFICATION = Notification.__table__  # type: ignore[attr-defined]
PERSON = Person.__table__  # type: ignore[attr-defined]
SHOWN = 10


def addressed_to(herald: Herald, slack_user_id: str, limit: int = SHOWN) -> list[dict[str, Any]]:
    """Status documents of the latest ``limit`` notifications delivered (or due) to this member."""
    to_member = exists().where(
        DELIVERY.c.notification_id == NOTIFICATION.c.id,
        DELIVERY.c.person_id == PERSON.c.id,
        PERSON.c.slack_user_id == slack_user_id,
    )
    query = select(NOTIFICATION.c.id).where(to_member).order_by(NOTIFICATION.c.created_at.desc()).limit(limit)
    with herald.store.begin() as connection:
        ids = [str(row[0]) for row in connection.execute(query).all()]
    found = (service.status(herald, notification_id) for notification_id in ids)
    return [status for status in found if status is not None]


def home_items(herald: Herald, slack_user_id: str, announcer: bool) -> list[dict[str, Any]]:
    """What the Home tab lists for this user: every recent one for an announcer, else their own."""
    if announcer:
        return service.recent(herald, SHOWN)
    return addressed_to(herald, slack_user_id) if slack_user_id else []
