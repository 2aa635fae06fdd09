"""Per-recipient truth: every person x channel of one notification, with state, reason and times.

One query serves ``herald status ID --recipients`` and ``GET /api/notifications/{id}/deliveries``.
Rows come in (person id, channel) order, a page at a time: keyset pagination along the unique index
``uq_delivery_target`` (notification, person, channel), so each page is one index range scan however
deep into a notification to 100,000 people it starts, and nothing is read into memory at once. The
cursor is the last row's person id and channel, base64url-encoded JSON (opaque to clients).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select, true

from bot.store import Store
from bot.tables import Delivery, Notification, Person, table_of

DELIVERY = table_of(Delivery)
NOTIFICATION = table_of(Notification)
PERSON = table_of(Person)

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
FIELDS = ("person_id", "name", "channel", "address", "state", "reason", "created_at", "sent_at")


class PageError(ValueError):
    """A bad ``limit`` or ``after``; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class Page:
    """One page of rows; ``next`` is the cursor for the following page, None after the last."""

    rows: list[dict[str, Any]]
    next: str | None


def iso_utc(moment: float | None) -> str | None:
    """``2026-12-04T22:18:31.250Z``; None stays None."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_limit(text: str | None) -> int:
    """``?limit=``: 1 to :data:`MAX_LIMIT`, :data:`DEFAULT_LIMIT` when absent."""
    if text is None:
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit() or not 1 <= int(text[:5]) <= MAX_LIMIT:
        raise PageError("limit", f"expected a whole number from 1 to {MAX_LIMIT}")
    return int(text)


Cursor = tuple[str, str] | None  # (person id, channel) of the last row shown; None: the start


def make_cursor(person_id: str, channel: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([person_id, channel]).encode()).decode().rstrip("=")


def parse_cursor(text: str | None) -> Cursor:
    """``?after=``: a cursor from an earlier page's ``next`` (None, the start, when absent)."""
    if text is None:
        return None
    try:
        found = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error):  # bad base64, bad UTF-8, bad JSON
        found = None
    if not (isinstance(found, list) and len(found) == 2 and all(isinstance(v, str) for v in found)):
        raise PageError("after", "expected the 'next' value of an earlier page")
    return found[0], found[1]


def exists(store: Store, notification_id: str) -> bool:
    with store.begin() as connection:
        found = connection.execute(
            select(NOTIFICATION.c.id).where(NOTIFICATION.c.id == notification_id)
        ).first()
    return found is not None


def _after(cursor: Cursor) -> Any:
    """Rows past ``cursor``; the first term alone is an index range (the OR is only checked in it)."""
    if cursor is None:
        return true()
    person_id, channel = cursor
    later = or_(DELIVERY.c.person_id > person_id, DELIVERY.c.channel > channel)
    return and_(DELIVERY.c.person_id >= person_id, later)


def page(store: Store, notification_id: str, limit: int, after: Cursor = None) -> Page:
    """Up to ``limit`` deliveries of ``notification_id`` after the cursor ``after``."""
    query = (
        select(
            DELIVERY.c.person_id,
            PERSON.c.name,
            DELIVERY.c.channel,
            DELIVERY.c.address,
            DELIVERY.c.state,
            DELIVERY.c.reason,
            DELIVERY.c.created_at,
            DELIVERY.c.sent_at,
        )
        .select_from(DELIVERY.outerjoin(PERSON, PERSON.c.id == DELIVERY.c.person_id))
        .where(DELIVERY.c.notification_id == notification_id, _after(after))
        .order_by(DELIVERY.c.person_id, DELIVERY.c.channel)
        .limit(limit + 1)
    )
    with store.begin() as connection:
        found = [row._mapping for row in connection.execute(query)]
    more = len(found) > limit
    shown = found[:limit]
    cursor = make_cursor(shown[-1]["person_id"], shown[-1]["channel"]) if more else None
    return Page([_row(row) for row in shown], cursor)


def _row(row: Any) -> dict[str, Any]:
    return {
        "person_id": row["person_id"],
        "name": row["name"] or "",  # a person since removed from the directory has no name
        "channel": row["channel"],
        "address": row["address"],
        "state": row["state"],
        "reason": row["reason"],
        "created_at": iso_utc(row["created_at"]),
        "sent_at": iso_utc(row["sent_at"]),
    }


def all_pages(store: Store, notification_id: str, size: int = MAX_LIMIT) -> Iterator[list[dict[str, Any]]]:
    """Every delivery of ``notification_id``, one page (its own short transaction) at a time."""
    after: Cursor = None
    while True:
        current = page(store, notification_id, size, after)
        if current.rows:
            yield current.rows
        if current.next is None:
            return
        after = current.rows[-1]["person_id"], current.rows[-1]["channel"]
