"""How reports tell a bounce apart: a delivery ``failed`` by a later bounce (reason ``bounced: …``,
:mod:`.bounces`) counts as ``bounced`` in ``status`` and ``report``, not as a synchronous ``failed``."""

from __future__ import annotations

import statistics
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, select
from sqlalchemy.engine import Connection

BOUNCED = "bounced"
BOUNCED_REASON = "bounced:"


def bounced_or_state(delivery: Table) -> ColumnElement[str]:
    """The delivery's state, or ``bounced`` for one a bounce failed."""
    c = delivery.c
    bounced = and_(c.state == "failed", c.reason.like(f"{BOUNCED_REASON}%"))
    return case((bounced, BOUNCED), else_=c.state).label("state")


def bounce_summary(
    connection: Connection, delivery: Table, notification: Table, since: float
) -> dict[str, Any]:
    """Bounced deliveries of notifications created since ``since``: how many, and the median and
    longest delay between the send and the bounce that failed it (seconds)."""
    c = delivery.c
    recent = select(notification.c.id).where(notification.c.created_at >= since).scalar_subquery()
    rows = connection.execute(
        select(c.updated_at - c.sent_at).where(
            c.notification_id.in_(recent), c.state == "failed", c.reason.like(f"{BOUNCED_REASON}%")
        )
    ).all()
    delays = sorted(float(row[0]) for row in rows if row[0] is not None)
    median = statistics.median(delays) if delays else None
    return {"count": len(rows), "median_delay_s": median, "max_delay_s": delays[-1] if delays else None}
